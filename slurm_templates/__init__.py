"""Batch-script templates of the campaign's Slurm job arrays, one per category of work (launchers/slurm.py
fills them in). A package so that they are installed with the code."""
