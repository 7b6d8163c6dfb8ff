"""``edge-inspector keys new NAME``: a CURVE key pair in pyzmq's certificate format."""

from __future__ import annotations

import argparse


def keys_command(args: argparse.Namespace) -> int:
    from edge_inspector.events.curve import create_key_pair, load_public_key

    public, secret = create_key_pair(args.dir, args.name)
    print(f"{public}  public key {load_public_key(str(public), 'keys').decode()}: give it to the other side")
    print(f"{secret}  secret key (mode 0600): keep it here, never copy it elsewhere")
    return 0
