"""``cookbook-chatops``: run cookbooks from chat (an IRC bot and a Slack-compatible slash command).

One core (:mod:`.core`) holds permissions, approvals, the queue and the runs; the front doors
(:mod:`.irc_bot`, :mod:`.slash`) only translate chat messages into core commands and core output
into chat messages. Every run goes through the normal ``cookbook`` runner in a subprocess.
"""
