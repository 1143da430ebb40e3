"""Fetch a URL inside a lab node, retrying until it answers (15 s): the metrics server
starts with the daemon, a moment after it."""
import sys, time, urllib.request
deadline = time.monotonic() + 15
while True:
    try:
        print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()); break
    except OSError:
        if time.monotonic() > deadline: raise
        time.sleep(0.1)
