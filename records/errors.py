"""The errors a user can cause and fix: a bad spec or file, a store that cannot be read, a busy launcher.

Each says what is wrong and where (file, YAML path); ``campaign``'s commands print it as one message,
without a traceback.
"""


class CampaignError(Exception):
    """An error whose message is for the user; every layer's such errors derive from it."""
