"""`pivoice doctor`: one command that checks a Pi's setup end to end and says how to fix what is wrong.

`cli` parses the options and runs the checks in order; each check family has its module
(`configcheck`, `audio`, `button`, `backend`, `realtime`) and returns a `report.Result`.
Audio, gpiozero and websocket-client are imported inside the checks that use them.
Main thread only (a check may start and join its own helper threads).
"""
