"""`harvester show TYPE IDENTIFIER`: the latest stored answer of one output.

By default the answer alone goes to stdout, pretty-printed (so `| jq` works), and one
line of metadata to stderr; `--json` gives both as one object, `--raw` the bytes as
received.
"""

from __future__ import annotations

import json
import sys

from harvester.commands.context import Invocation
from harvester.commands.formats import parse_body
from harvester.errors import CommandError
from harvester.identifiers import normalise
from harvester.model import ExitCode


def cmd_show(
    invocation: Invocation, id_type: str, identifier_text: str, *, raw: bool, as_json: bool
) -> ExitCode:
    """`harvester show TYPE IDENTIFIER [--raw|--json]`: exit 1 if absent or damaged."""
    identifier = normalise(id_type, identifier_text)
    with invocation.open_store(read_only=True) as store:
        job = store.jobs.find(identifier)
        if job is None:
            raise CommandError(f"{identifier} is not in the store")
        response = store.responses.latest(job["id"])
    if response is None:
        raise CommandError(f"{identifier} has no stored response yet (state: {job['state']})")
    if raw:
        sys.stdout.buffer.write(response["body"])
        sys.stdout.buffer.flush()
        return ExitCode.OK
    metadata = {
        "type": identifier.id_type,
        "identifier": identifier.value,
        "state": job["state"],
        "http_status": response["http_status"],
        "fetched_at": response["fetched_at"],
        "mode": response["mode"],
        "sha256": response["sha256"],
        "size_bytes": response["size_bytes"],
        "request_params": json.loads(response["request_params"] or "{}"),
    }
    parsed = parse_body(response["body"])
    # A JSON answer as JSON; any other (a 404's `Not Found`) as the text it is.
    answer = parsed if parsed is not None else response["body"].decode("utf-8", "replace")
    if as_json:
        print(json.dumps({**metadata, "body": answer}, indent=2, ensure_ascii=False))
        return ExitCode.OK
    # The answer alone on stdout, so `harvester show ... | jq` works; the rest aside,
    # on two lines of readable length.
    names = ("type", "identifier", "state", "http_status", "fetched_at", "mode")
    print("  ".join(f"{name}={metadata[name]}" for name in names), file=sys.stderr)
    print(
        f"sha256={metadata['sha256']}  size_bytes={metadata['size_bytes']}"
        f"  params={response['request_params']}",
        file=sys.stderr,
    )
    print(json.dumps(answer, indent=2, ensure_ascii=False) if parsed is not None else answer)
    return ExitCode.OK
