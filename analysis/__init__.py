"""Analysis of MLFF-MD runs, pure numpy: from frames to the numbers and verdicts the results hold.

* ``rdf``, ``stability``, ``transport``, ``statistics``, ``diffusion_paths``, ``errors``: the measurements.
* ``runs``: what one run measures; ``verdicts``: the rules that decide a run's verdict against the reference
  (noise floor, collapse threshold, resolvability); ``aggregation``: per temperature and per material.
* ``settings``: the one type of the analysis settings, for the spec, the analyze stage and ``campaign analyze``.

To add a per-run metric, touch three files: ``verdicts`` (compute it, name it in
``RunAssessment.document_fields``), records/results.py (its ``RunResult`` field) and the table or report
that shows it (campaign/tables.py, campaign/report.py).
"""
