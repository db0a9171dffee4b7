"""A study cell's log (rdet.study.logs.cell_log) when signal handlers log into it: Slurm's
time-limit and requeue signals run Python handlers that log, and one can land inside a write to
the log (a write the signal interrupts runs the handler there)."""
import logging
import os
import re
import signal
import threading
import time

from rdet.study.logs import cell_log


def test_a_record_logged_by_a_signal_handler_mid_write_is_written_after_it(tmp_path, monkeypatch):
    """The log is a FIFO read only after a pause, so the 400 kB record's write blocks on the full
    pipe, and signals sent every 20 ms interrupt it (EINTR): their handler runs inside that write
    and logs. Without the cell handler's queue this fails with "reentrant call inside
    BufferedWriter" and the error's report, written to the same log, ends the block."""
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # only the cell's: none an earlier test left
    path = tmp_path / "log.txt"
    os.mkfifo(path)
    chunks = []

    def read_late():
        with open(path, "rb") as r:
            time.sleep(0.5)
            while chunk := r.read(65536):
                chunks.append(chunk)

    reader = threading.Thread(target=read_late)
    reader.start()
    main, stop = threading.main_thread().ident, threading.Event()

    def signal_often():
        while not stop.wait(0.02):
            signal.pthread_kill(main, signal.SIGUSR1)

    old = signal.signal(signal.SIGUSR1, lambda *_: logging.getLogger("celltest.handler").warning("signalled"))
    sender = threading.Thread(target=signal_often)
    try:
        with cell_log(path, "signals"):
            sender.start()
            logging.getLogger("celltest.main").warning("x" * 400_000)
            stop.set()
            sender.join()
    finally:
        stop.set()
        signal.signal(signal.SIGUSR1, old)
        reader.join()
    text = b"".join(chunks).decode()
    assert "Logging error" not in text and "reentrant call" not in text, text[-3000:]
    big = re.search(r"celltest\.main WARNING\] x{400000}\n", text)  # whole, on its own line
    assert big, text[-3000:]
    after = text[big.end():].count("celltest.handler WARNING] signalled\n")
    assert after >= 5, text[big.end():][:3000]  # the signals that came during the write, after it
