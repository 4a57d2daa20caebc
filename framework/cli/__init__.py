"""The `pipeline` command line: `app.py` holds the app and error handling, one module per command
group (run, worker, submit, status, dead, check), plus the helpers they share."""
