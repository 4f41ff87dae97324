"""Local function tools the model may call: built-ins, `command` and `http` tools (issue #9).

`config.read_tools` reads the `tools:` config section, `registry.build_registry` turns it into tools,
and `runner.ToolRunner` runs the model's calls off the controller thread and posts one `ToolResult`
per call. Nothing is imported here: reading the config must not load the runners (http.client, ssl,
subprocess) on a daemon that has no tools (plain-ALSA peak RSS: +10 MiB when it did).
"""
