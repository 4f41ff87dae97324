"""Local function tools the model may call: built-ins, `command` and `http` tools (issue #9).

`read_tools` reads the `tools:` config section, `build_registry` turns it into tools, and `ToolRunner`
runs the model's calls off the controller thread and posts one `ToolResult` per call.
"""

from pivoice.tools.base import CallContext, Outcome, Tool
from pivoice.tools.builtin import BUILTIN_NAMES, END_CONVERSATION, VolumeControl
from pivoice.tools.config import ToolsConfig, read_tools
from pivoice.tools.registry import ToolRegistry, build_registry
from pivoice.tools.runner import ToolResult, ToolRunner
from pivoice.tools.schema import SchemaError, check_schema, validate
from pivoice.tools.timers import Timer, TimerService

__all__ = ["BUILTIN_NAMES", "END_CONVERSATION", "CallContext", "Outcome", "SchemaError", "Timer", "TimerService",
           "Tool", "ToolRegistry", "ToolResult", "ToolRunner", "ToolsConfig", "VolumeControl", "build_registry",
           "check_schema", "read_tools", "validate"]
