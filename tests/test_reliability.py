"""Work that must not be destroyed or left behind: checkpoint folders held by one run at a
time, no fresh run over another run's checkpoint, the temporary files of a killed run
removed by the next one (issue #21)."""

import os
import signal
import subprocess
import sys
import time

import pytest

import aekit
from aekit.exceptions import InputError
from aekit.runtime import atomic_write, remove_stale_temporaries
from aekit.training.checkpoint import CHECKPOINT_NAME, LOCK_NAME, claim

RUN = dict(hidden_layer_sizes=(8,), max_iter=2, batch_size=32, random_state=0)


@pytest.fixture(scope="module")
def rows():
    return aekit.datasets.load("digits")[0][:100]


def test_a_fresh_run_over_another_runs_checkpoint_is_refused(rows, tmp_path):
    aekit.AE(**RUN).fit(rows, checkpoint_dir=tmp_path)
    before = (tmp_path / CHECKPOINT_NAME).read_bytes()
    other = aekit.AE(**{**RUN, "n_components": 3})
    with pytest.raises(InputError, match="holds the checkpoint of an earlier run.*--overwrite"):
        other.fit(rows, checkpoint_dir=tmp_path)
    assert (tmp_path / CHECKPOINT_NAME).read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [CHECKPOINT_NAME]        # the lock is gone too
    aekit.AE(**{**RUN, "max_iter": 3}).fit(rows, checkpoint_dir=tmp_path, resume=True)


def test_overwrite_replaces_the_checkpoint(rows, tmp_path):
    aekit.AE(**RUN).fit(rows, checkpoint_dir=tmp_path)
    with claim(tmp_path, resume=False, overwrite=True):
        assert not (tmp_path / CHECKPOINT_NAME).exists()
        # fit claims the folder again inside: nested in this thread's claim, it goes on
        aekit.AE(**{**RUN, "n_components": 3}).fit(rows, checkpoint_dir=tmp_path)
        assert (tmp_path / LOCK_NAME).exists()
    assert sorted(os.listdir(tmp_path)) == [CHECKPOINT_NAME]


def test_a_second_concurrent_writer_is_refused(rows, tmp_path):
    with claim(tmp_path):
        code = ("import sys, aekit\n"
                "from aekit.training.checkpoint import claim\n"
                "try:\n"
                "    with claim(sys.argv[1]):\n"
                "        pass\n"
                "except aekit.exceptions.InputError as exc:\n"
                "    print(exc)\n")
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                             text=True, timeout=120)
        assert "another run is writing checkpoints into" in out.stdout, out.stderr
        with pytest.raises(InputError, match="another run is writing checkpoints"):
            import threading

            errors = []

            def other_thread():
                try:
                    aekit.AE(**RUN).fit(rows, checkpoint_dir=tmp_path)
                except InputError as exc:
                    errors.append(exc)

            thread = threading.Thread(target=other_thread)
            thread.start()
            thread.join()
            raise errors[0]
    assert not (tmp_path / CHECKPOINT_NAME).exists()
    with claim(tmp_path):               # released: the next run takes it
        pass


def test_a_checkpoint_dir_that_is_a_file_is_refused(rows, tmp_path):
    (tmp_path / "ck").write_text("notes")
    with pytest.raises(InputError, match="checkpoint_dir .*ck' is a file, not a folder"):
        aekit.AE(**RUN).fit(rows, checkpoint_dir=tmp_path / "ck")
    assert (tmp_path / "ck").read_text() == "notes"


KILLED_WRITER = """
import sys, time
from aekit.runtime import atomic_write

def write(tmp):
    with open(tmp, "wb") as f:
        f.write(b"half a checkpoint")
        f.flush()
    print("writing", flush=True)
    time.sleep(60)

atomic_write(sys.argv[1], write)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_the_temporary_file_of_a_killed_run_is_removed_by_the_next(rows, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER,
                             str(tmp_path / CHECKPOINT_NAME)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert len(left) == 1 and left[0].startswith(f".{CHECKPOINT_NAME}.")
    # files of other names, or not quite aekit's pattern, are not aekit's to remove
    keep = [".checkpoint.safetensors.xyz.tmp", "notes.tmp", ".model.safetensors.0123456789ab.tmp",
            f".{CHECKPOINT_NAME}.0123456789ab.tmp.bak"]
    for name in keep:
        (tmp_path / name).write_text("mine")
    aekit.AE(**RUN).fit(rows, checkpoint_dir=tmp_path, resume=True)
    assert sorted(os.listdir(tmp_path)) == sorted([CHECKPOINT_NAME, *keep])


def test_stale_temporaries_need_an_age_without_the_lock(tmp_path):
    young = tmp_path / f".{CHECKPOINT_NAME}.00000000000a.tmp"
    old = tmp_path / f".{CHECKPOINT_NAME}.00000000000b.tmp"
    young.write_bytes(b"")
    old.write_bytes(b"")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert remove_stale_temporaries(tmp_path, CHECKPOINT_NAME) == [old]
    assert young.exists() and not old.exists()


def test_a_failed_write_names_the_output_not_the_temporary(tmp_path):
    def full_disk(tmp):
        raise OSError(28, "No space left on device", tmp)

    with pytest.raises(OSError, match=r"cannot write '.*out.npy': No space left on device"):
        atomic_write(tmp_path / "out.npy", full_disk)
    assert os.listdir(tmp_path) == []


def test_a_write_that_outgrows_the_file_size_limit_names_the_output(tmp_path):
    """A real short write (RLIMIT_FSIZE, as on a full disk) ends in one line naming the
    output, and leaves nothing behind."""
    code = ("import resource, signal, sys, numpy as np\n"
            "from aekit.runtime import atomic_write\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
            "def write(tmp):\n"
            "    with open(tmp, 'wb') as f:\n"
            "        np.save(f, np.zeros(100_000))\n"
            "try:\n"
            "    atomic_write(sys.argv[1], write)\n"
            "except OSError as exc:\n"
            "    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "big.npy")],
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith(f"cannot write '{tmp_path / 'big.npy'}': "), \
        out.stdout + out.stderr
    assert len(out.stdout.splitlines()) == 1 and os.listdir(tmp_path) == []
