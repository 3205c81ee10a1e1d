"""Every command's command line: the batch command `captioner` (batch/), captioner-export,
captioner-import and captioner-push, and the arguments they share (args)."""
