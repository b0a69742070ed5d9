"""Task capture: the MCP server an agent calls to freeze a session into a task, and the commands around it.

It drives the harness's core (task loading, the scripted model in tests) and the tracing proxy's
store; neither of them imports it.
"""
