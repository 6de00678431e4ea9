#!/bin/bash
# One campaign job array of CPU work (analyze); each array task is one rocket. Filled in by
# launchers/slurm.py: every double-braced placeholder must be given a value, and only the directives of optional
# settings (account, partition, qos) are left out when set to null.
#SBATCH --job-name={{job_name}}
#SBATCH --array={{array}}
#SBATCH --partition={{partition}}
#SBATCH --account={{account}}
#SBATCH --qos={{qos}}
#SBATCH --time={{walltime_minutes}}
#SBATCH --mem={{memory_MB}}M
#SBATCH --cpus-per-task={{cpus_per_task}}
#SBATCH --signal=B:USR1@{{warning_s}}
#SBATCH --no-requeue
#SBATCH --output={{job_dir}}/slurm-%A_%a.out
# Slurm may send its SIGUSR1 warning up to a minute early (sbatch --signal), even at the start of a short
# task: ignored until the rocket installs its handler (an ignored signal stays ignored across exec), it
# cannot kill the rocket while Python starts; the time limit's SIGTERM still makes it checkpoint.
trap '' USR1
set -eo pipefail
{{pre_command}}
echo "array task ${SLURM_ARRAY_TASK_ID} of job ${SLURM_ARRAY_JOB_ID} on $(hostname)"
# exec: the rocket becomes the batch shell, so Slurm's SIGUSR1 warning and SIGTERM reach it directly.
exec {{python}} -m launchers.slurm {{job_dir}}/manifest.json
