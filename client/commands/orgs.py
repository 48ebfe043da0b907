"""``carbonledger org register|rotate-key|revoke-key|show|list``: organizations
and their keys. An authority registers an org; the org itself (or an
authority) rotates or revokes its keys."""

from __future__ import annotations

import argparse
from typing import Any

from client.commands._common import (
    add_node_options,
    add_signer_options,
    connect,
    emit,
    load_vkey,
    submit,
)

__all__ = ["org_dict", "register"]

ROLES = ("authority", "gec_issuer", "ccer_registry", "verifier", "supplier", "exchange")


def cmd_register(args: argparse.Namespace) -> int:
    body = {
        "id": args.id,
        "name": args.name,
        "roles": list(dict.fromkeys(args.role)),
        "keys": [load_vkey(k) for k in args.vkey],
    }
    submit(args, "org.register", body, what=f"registered {args.id} ({', '.join(body['roles'])})")
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    body = {"orgId": args.id, "oldKey": load_vkey(args.old), "newKey": load_vkey(args.new)}
    submit(args, "org.rotate_key", body, what=f"{args.id}: key rotated")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    body = {"orgId": args.id, "key": load_vkey(args.vkey), "reason": args.reason}
    submit(args, "org.revoke_key", body, what=f"{args.id}: key revoked")
    return 0


def org_dict(o: Any) -> dict[str, Any]:
    return {
        "id": o.id, "name": o.name, "roles": list(o.roles), "registered": o.registered,
        "registered_by": o.registered_by, "past_keys": o.past_keys,
        "keys": [{"vkey": k.vkey, "status": k.status, "added": k.added,
                  **({"removed": k.removed} if k.HasField("removed") else {})} for k in o.keys],
    }  # fmt: skip


def _org_lines(o: dict[str, Any]) -> str:
    keys = "\n".join(f"    {k['status']:8} {k['vkey']}" for k in o["keys"])
    listed = sum(k["status"] != "current" for k in o["keys"])
    if o["past_keys"] > listed:
        keys += f"\n    ({o['past_keys'] - listed} earlier keys not listed)"
    return (f"{o['id']}  {o['name']}\n  roles: {', '.join(o['roles'])}\n"
            f"  registered at entry {o['registered']} by {o['registered_by']}\n  keys:\n{keys}")


def cmd_show(args: argparse.Namespace) -> int:
    with connect(args) as client:
        o = org_dict(client.org(args.id))
    emit(args, _org_lines(o), o)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        orgs = [org_dict(o) for o in client.orgs(args.role or "")]
    human = "\n".join(f"{o['id']:20} {', '.join(o['roles']):22} {o['name']}" for o in orgs) or "no organizations"
    emit(args, human, orgs)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    org = sub.add_parser("org", help="register organizations, rotate and revoke their keys")
    verbs = org.add_subparsers(dest="verb", required=True)

    p = verbs.add_parser("register", help="register an organization (signed by an authority)")
    p.add_argument("id", help="organization id, e.g. a unified social credit code")
    p.add_argument("--name", required=True)
    p.add_argument("--role", action="append", required=True, choices=ROLES, help="repeatable")
    p.add_argument("--vkey", action="append", required=True, metavar="VKEY",
                   help="the org's verifier key, or a .vkey file; repeatable")
    add_signer_options(p)
    add_node_options(p)
    p.set_defaults(func=cmd_register)

    p = verbs.add_parser("rotate-key", help="replace one of an organization's keys")
    p.add_argument("id")
    p.add_argument("--old", required=True, metavar="VKEY", help="the current key (or its .vkey file)")
    p.add_argument("--new", required=True, metavar="VKEY", help="the new key (or its .vkey file)")
    add_signer_options(p)
    add_node_options(p)
    p.set_defaults(func=cmd_rotate)

    p = verbs.add_parser("revoke-key", help="revoke one of an organization's keys")
    p.add_argument("id")
    p.add_argument("--vkey", required=True, metavar="VKEY", help="the key to revoke (or its .vkey file)")
    p.add_argument("--reason", required=True)
    add_signer_options(p)
    add_node_options(p)
    p.set_defaults(func=cmd_revoke)

    p = verbs.add_parser("show", help="an organization, its roles and keys")
    p.add_argument("id")
    add_node_options(p)
    p.set_defaults(func=cmd_show)

    p = verbs.add_parser("list", help="organizations, optionally of one role")
    p.add_argument("--role", choices=ROLES)
    add_node_options(p)
    p.set_defaults(func=cmd_list)
