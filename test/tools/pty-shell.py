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
sees. The prompts are numbered (see PROMPT), so typed text cannot fake one. At the end
the program waits for `await_file` (if given), then kills the shell; the transcript (hex) goes to stdout.
After a segment with a
ctrl-c, a probe command is typed until it has run (see sync). Waits are bounded; nothing here asserts on time.
"""
import json
import os
import pty
import re
import select
import sys
import time

WAIT_S = 10.0
# PS1/PS2 are "P$((n+=1))> ": each prompt has its own number, and a redraw of
# the line (busybox reprints the prompt) does not count as a new one.
PROMPT = re.compile(rb"P([0-9]+)> ")


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
            found = [int(m) for m in PROMPT.findall(bytes(out))]
            prompts = max(found) if found else 0
        return True

    def quiet(wait_s: float) -> None:
        while True:
            r, _, _ = select.select([fd], [], [], wait_s)
            if not r:
                return
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            out.extend(chunk)

    def sync(n: int) -> None:
        # After ctrl-c, bash prints its prompt before its line editor is back,
        # and keys typed in between can be lost: type a probe until its answer
        # (computed, so not its echo) is seen, clearing the line before each try.
        answer = str(1000 + n).encode()
        for _ in range(10):
            quiet(0.3)
            start = len(out)
            os.write(fd, b"\x05\x15echo $((1000+%d))\r" % n)
            if pump(prompts + 1, 5.0) and answer in out[start:]:
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
    # The test names a file its last line creates: wait for it (bounded).
    await_file = spec.get("await_file")
    deadline = time.monotonic() + WAIT_S
    while await_file and not os.path.exists(await_file) and time.monotonic() < deadline:
        pump(prompts + 1, 0.2)
    # The shell itself is not needed any more.
    try:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    except OSError:
        pass
    sys.stdout.write(json.dumps({"transcript": out.hex()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
