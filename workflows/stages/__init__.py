"""The campaign's stages as plain functions, one module each: the one call each firetask makes.

Each stage takes its typed inputs (workflows/inputs.py), reads its input files, calls mlff/ (models,
training, MD) and analysis/ (pure numpy, and every rule of a verdict), writes its outputs into its own
directory, and returns ``{"summary": ..., "results": [...]}``: a JSON summary for the launch record and
the typed result documents (records/results.py) for the results collection.

* ``reference``: ``generate_reference``, ``import_reference``;
* ``training``: ``train``, ``fine_tune``;
* ``prediction``: ``predict``;
* ``md``: ``md``;
* ``analyze``: ``analyze``, and ``run_document``, which ``campaign analyze`` calls too.

To add a stage: its inputs model in workflows/inputs.py, a module here with its function, a firetask in
workflows/firetasks.py that maps the inputs to it (a new class path: stored firetask paths never move),
and the tasks that use it in campaign/tasks.py.
"""
