#!/usr/bin/env python3
"""Runs a real interactive shell under a pty and types into it what a test says.

Used by test/security/typed-line.test.ts: the test runs keystrokes through the
gateway's typed-line guard and hands this program what the guard forwarded;
this program is the container's terminal. Input on stdin is JSON:

  {"argv": ["bash", "--norc", "-i"], "cwd": "/tmp/x", "env": {...},
   "segments": [{"hex": "6c730d", "executes": true}, ...]}

Each segment is written once the shell shows a prompt: the first one after the
first prompt, and after a segment that `executes` (the guard forwarded an
Enter or a ctrl-c), the next one only after a new prompt. Writing while the
shell runs a command would let the kernel's canonical mode edit the bytes
instead of the shell's line editor, which is not what a person at a terminal
sees. The prompts contain $((6*7)), so typed text cannot fake one. At the end
the shell is killed; the transcript (hex) goes to stdout.
After a segment with a
ctrl-c, a probe command is typed until it has run (see sync). Waits are bounded; nothing here asserts on time.
"""
import json
import os
import pty
import select
import sys
import time

WAIT_S = 10.0


def main() -> int:
    spec = json.load(sys.stdin)
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(spec["cwd"])
        os.execvpe(spec["argv"][0], spec["argv"], spec["env"])
    out = bytearray()
    prompts = 0

    def pump(until_prompts: int, wait_s: float = WAIT_S) -> bool:
        nonlocal prompts
        deadline = time.monotonic() + wait_s
        while prompts < until_prompts:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return False
            if not chunk:
                return False
            out.extend(chunk)
            prompts = out.count(b"P42> ")
        return True

    def sync(n: int) -> None:
        # After ctrl-c, bash prints its prompt before its line editor is back,
        # and keys typed in between can be lost: type a probe until its answer
        # (computed, so not its echo) is seen, clearing the line before each try.
        answer = str(1000 + n).encode()
        for _ in range(20):
            start = len(out)
            os.write(fd, b"\x05\x15echo $((1000+%d))\r" % n)
            want = prompts + 1
            if pump(want, 1.0) and answer in out[start:]:
                return

    probe = 0
    pump(1)
    for seg in spec["segments"]:
        before = prompts
        data = bytes.fromhex(seg["hex"])
        os.write(fd, data)
        if seg["executes"]:
            pump(before + 1)
        if b"\x03" in data:
            probe += 1
            sync(probe)
    # The last command has finished once its prompt is back; the shell itself is not needed any more.
    try:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    except OSError:
        pass
    sys.stdout.write(json.dumps({"transcript": out.hex()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
