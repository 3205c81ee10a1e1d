"""The batch command, `captioner PATH...`: caption a folder of photos overnight, losing nothing.

Inputs stream in (photos, over captioner.photos.inputs), are read by background workers and
captioned in batches (captioner.pipeline), and each batch's rows are written and flushed at once
(writers), so a killed run keeps what it finished and `--resume` carries on. A photo that cannot
be read becomes an error row and a line on stderr; the run goes on.

Every photo found is counted once in the summary (report): captioned, failed (no caption in the
output) or already done (in the output before a --resume). An extra output that was not written
(extras: a sidecar or description kept, an attention grid that could not be saved) is counted
apart, as its photo still has its caption.

The command line (command) checks its arguments into a BatchRun (config); `run(config,
captioner)` (run) does the rest, raising an OutputError when the output cannot be opened as
asked (output). `python -m captioner.batch` and `torchrun -m captioner.batch` start it too
(captioner/batch/__main__.py).
"""
