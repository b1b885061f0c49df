"""The life of a run outside the flow bodies: open and finish it, recover it after a crash, answer its gates,
re-evaluate it. The CLI, the dashboard and the flows all use these; none of them needs a flow to be running.
"""
