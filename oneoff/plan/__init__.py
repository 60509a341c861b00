"""Pure planning: the probe's request and answer, tasks, and one RunSpec per host."""
