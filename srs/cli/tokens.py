"""`srs token create|list|revoke`: the API's bearer tokens, managed on the data directory (the
secret is printed once, at creation; only its hash is kept)."""

from __future__ import annotations

import argparse
import sys

from srs.cli.datadir import common_parser, open_service
from srs.cli.output import actor, errors_as_exit_status, print_json
from srs.service.audit import Action
from srs.service.timefmt import iso_utc
from srs.service.tokens import SCOPES, TokenService


@errors_as_exit_status
def _create(args: argparse.Namespace) -> int:
    with open_service(args) as service:
        token, record = TokenService(service.index).create(args.scope, args.name)
        service.audit.record(actor(), Action.TOKEN_CREATE,
                             detail={"token_id": record["id"], "scope": record["scope"]})
    if args.json:
        print_json({"token": token, "id": record["id"], "scope": record["scope"], "name": record["name"]})
    else:
        print(token)
        print(f"token {record['id']} (scope {record['scope']}) — shown once, store it now", file=sys.stderr)
    return 0


@errors_as_exit_status
def _list(args: argparse.Namespace) -> int:
    with open_service(args) as service:
        records = TokenService(service.index).list()
    items = [
        {**r, "created_at": iso_utc(r["created_at"]), "revoked_at": iso_utc(r["revoked_at"])} for r in records
    ]
    if args.json:
        print_json({"items": items})
        return 0
    for item in items:
        status = f"revoked {item['revoked_at']}" if item["revoked_at"] else "active"
        line = f"{item['id']}  {item['scope']:<5}  {item['created_at']}  {status}  {item['name'] or ''}"
        print(line.rstrip())
    return 0


@errors_as_exit_status
def _revoke(args: argparse.Namespace) -> int:
    with open_service(args) as service:
        TokenService(service.index).revoke(args.id)
        service.audit.record(actor(), Action.TOKEN_REVOKE, detail={"token_id": args.id})
    print(f"revoked {args.id}", file=sys.stderr)
    return 0


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser | None = None,
) -> None:
    common = common if common is not None else common_parser()
    token = subparsers.add_parser("token", help="manage API bearer tokens")
    actions = token.add_subparsers(dest="token_command", required=True, metavar="COMMAND")
    create = actions.add_parser("create", parents=[common], help="create a token (printed once)")
    create.add_argument("--scope", choices=SCOPES, required=True)
    create.add_argument("--name", metavar="N")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=_create)
    listing = actions.add_parser("list", parents=[common], help="list tokens (never the secret)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_list)
    revoke = actions.add_parser("revoke", parents=[common], help="revoke a token by id")
    revoke.add_argument("id")
    revoke.set_defaults(func=_revoke)
