"""`python -m captioner.batch` and `torchrun -m captioner.batch`: the batch command's module name
(the command itself is captioner/cli/batch/)."""
