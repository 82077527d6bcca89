"""Getting alerts to people: live WebSocket pushes, signed webhooks, e-mail."""


class NotifyError(Exception):
    """A notification could not be delivered (recorded on its notifications row, retried)."""
