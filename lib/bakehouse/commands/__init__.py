"""The commands bakehouse adds to doit (`doit plan`, `doit images`, `doit info`), registered
through doit's `doit.COMMAND` entry points. They sit on top: they ask the planner (decide.py)
and the registries through it, and never reach into a provider."""
