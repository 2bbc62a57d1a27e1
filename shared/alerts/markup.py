"""Tenant text as plain text in the markup a chat client renders: Teams Adaptive Cards (a CommonMark subset) and Slack
mrkdwn. Tenant names, Conditional Access policy names, UPNs and the summaries built from them are set by whoever
administers a customer tenant; a policy named `[Re-consent now](https://…)` must reach the SOC as those characters,
never as a link or formatting. The e-mail channel escapes HTML itself (html.escape); the webhook sends JSON data.

Each channel escapes every data string it lays out and adds its own markup (bold labels, the dashboard link) around
the escaped text, never inside it.
"""

from __future__ import annotations

import re
from typing import Any

# CommonMark: a backslash before ASCII punctuation shows that character as itself. Escaped anywhere: what can open a
# link or image ([ ]), an autolink or HTML (<), emphasis or code (* ~ `, and _ unless inside a word, where it opens
# nothing: exo_smtp_auth_disabled stays readable), and the backslash itself. Escaped at the start of a line only: a
# heading, quote or list (# > - + 1.).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*~\[\]<])|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_LINE_START = re.compile(r"^([ \t]*)([#>]|[-+](?=\s|$)|\d+(?=[.)](?:\s|$)))", re.MULTILINE)
_SCHEME = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{1,31}):(?=//)")


def teams_markdown(value: Any) -> str:
    """`value` as text in a TextBlock or a fact: markdown punctuation backslash-escaped, a line that would start a
    heading, quote or list escaped, and `scheme://` written `scheme\\://` so a URL is shown, not followed."""
    text = _MARKDOWN_SPECIAL.sub(lambda match: "\\" + match.group(0), str(value))
    text = _LINE_START.sub(lambda match: match.group(1) + (match.group(2) + "\\" if match.group(2)[0].isdigit()
                                                           else "\\" + match.group(2)), text)
    return _SCHEME.sub(r"\1\\:", text)


# Slack mrkdwn has no escape character (a backslash shows as itself): & < > are the three it decodes as entities, and
# the emphasis markers are replaced with characters that look the same but never pair. An underscore inside a word
# (first_last@contoso.example) opens nothing and stays.
_SLACK_LOOKALIKES = str.maketrans({"*": "\u2217", "~": "\u223c", "`": "\u02cb"})
_LONE_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


def slack_mrkdwn(value: Any) -> str:
    """`value` as text in a mrkdwn field: & < > as entities (so no <url|text> link, <!channel> or <@user> mention),
    * ~ ` as look-alikes (∗ ∼ ˋ), an underscore that could open italics as ˍ. Send it with `verbatim: true` so
    Slack does not turn a bare URL or #channel in it into a link either."""
    text = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _LONE_UNDERSCORE.sub("\u02cd", text.translate(_SLACK_LOOKALIKES))
