"""Requests a minute of an idle reader of a bucket (issue 18): a page rerunning every second
over N ended runs, an ended group of them and one live run, against moto's S3 server on
localhost. The reader's own
requests are counted with a botocore event hook on its filesystem; the writer's are not.

    .venv/bin/python bench/remote_reader_requests.py [--runs 10] [--seconds 60] [--live 0|1]
"""
from __future__ import annotations

import argparse
import os
import socket
import tempfile
import threading
import time
from collections import Counter

from moto.server import ThreadedMotoServer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10, help="ended runs in the bucket")
    ap.add_argument("--seconds", type=float, default=60.0, help="how long the reader idles")
    ap.add_argument("--live", type=int, choices=(0, 1), default=1,
                    help="1: the running run logs an epoch a second; 0: it only beats")
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    tmp = tempfile.mkdtemp()
    os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="x",
                      AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION="us-east-1",
                      CURVEWATCH_SPOOL=f"{tmp}/spool", CURVEWATCH_MIRROR=f"{tmp}/mirror")
    import boto3

    from curvewatch import tracking
    from curvewatch.tracking import object_store, remote_read
    boto3.client("s3").create_bucket(Bucket="bench")
    url = "s3://bench/team"
    ended = []
    for i in range(args.runs):
        with tracking.Run.create(url, name=f"ended{i}", heartbeat_seconds=0) as run:
            for _ in range(20):
                run.log_epoch(train_loss=1.0, val_loss=1.0)
        ended.append({"index": i, "name": f"ended{i}", "run_id": run.id, "state": "completed"})
    group = tracking.GroupWriter.create(  # a group goes up from the writer's spool
        object_store.spool_dir(object_store.parse_url(url)), name="seeds", method="repeat",
        validation="holdout", members=ended)
    group.finish("completed", aggregate=None)
    live = tracking.Run.create(url, name="live")
    done = threading.Event()

    def train() -> None:
        while args.live and not done.wait(1.0):
            live.log_epoch(train_loss=1.0, val_loss=1.0)
    threading.Thread(target=train, daemon=True).start()

    root = object_store.parse_url(url)
    fs = object_store.filesystem(root)
    counts: Counter[str] = Counter()
    remote_read.refresh(root, fs, force=True)  # the first read fetches everything
    fs.s3.meta.events.register("before-call.s3",  # s3fs's aiobotocore client, made by now
                               lambda model, **_: counts.update([model.name]))
    start = time.monotonic()
    while time.monotonic() - start < args.seconds:
        remote_read.refresh(root, fs)  # a dashboard rerun each second
        time.sleep(1.0)
    done.set()
    live.finish()
    minutes = (time.monotonic() - start) / 60
    total = sum(counts.values())
    poll = os.environ.get(remote_read.POLL_ENV) or remote_read.POLL_SECONDS
    pace = "an epoch a second" if args.live else "no new epochs, heartbeat only"
    print(f"{args.runs} ended runs + 1 ended group + 1 running run ({pace}), poll {poll} s: "
          f"{total / minutes:.1f} requests/minute ({dict(counts)} in {minutes * 60:.0f} s)")
    server.stop()


if __name__ == "__main__":
    main()
