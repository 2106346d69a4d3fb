"""The measuring rig: a private sshd on 127.0.0.1 in its own cgroup, and `measure`, which runs
one command and reads wall time, CPU and peak RSS of the local process tree (GNU time),
CPU of everything the sshd ran (cgroup v1 cpuacct or v2 cpu.stat) and the bytes that crossed
the loopback (/proc/net/dev of the private network namespace the whole harness runs in)."""

import os
import re
import shutil
import socket
import subprocess
import time


def lo_bytes():
    """Bytes received on lo in this network namespace (each packet once, TCP/IP headers in)."""
    with open("/proc/net/dev") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name.strip() == "lo":
                return int(rest.split()[0])
    raise RuntimeError("no lo in /proc/net/dev")


class CpuGroup:
    """A cgroup the sshd (and so every remote command it starts) runs in; `usage()` is its
    CPU time in seconds."""

    def __init__(self, name):
        v1 = "/sys/fs/cgroup/cpuacct"
        v2 = "/sys/fs/cgroup"
        if os.path.isdir(v1):
            self.path, self.kind = os.path.join(v1, name), "cgroup v1 cpuacct"
        elif os.path.exists(os.path.join(v2, "cgroup.controllers")):
            self.path, self.kind = os.path.join(v2, name), "cgroup v2 cpu.stat"
        else:
            self.path = None
            self.kind = "none"
            return
        os.makedirs(self.path, exist_ok=True)

    def add(self, pid):
        if self.path:
            with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
                f.write(str(pid))

    def usage(self):
        if not self.path:
            return float("nan")
        if self.kind.startswith("cgroup v1"):
            with open(os.path.join(self.path, "cpuacct.usage")) as f:
                return int(f.read()) / 1e9
        with open(os.path.join(self.path, "cpu.stat")) as f:
            for line in f:
                k, v = line.split()
                if k == "usage_usec":
                    return int(v) / 1e6
        return float("nan")

    def remove(self):
        if self.path:
            for _ in range(50):
                try:
                    os.rmdir(self.path)
                    return
                except OSError:
                    time.sleep(0.1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Sshd:
    """OpenSSH server on 127.0.0.1, own keys, root login by key only, LogLevel DEBUG1 so the
    negotiated cipher of each connection can be read from its log."""

    def __init__(self, work, ciphers=None):
        self.dir = os.path.join(work, "ssh")
        os.makedirs(self.dir, mode=0o700)
        d = self.dir
        for key in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                            os.path.join(d, key)], check=True)
        shutil.copy(os.path.join(d, "client_key.pub"), os.path.join(d, "authorized_keys"))
        self.port = free_port()
        self.key = os.path.join(d, "client_key")
        fp = subprocess.run(["ssh-keygen", "-lf", os.path.join(d, "host_key.pub")],
                            check=True, capture_output=True, text=True).stdout.split()[1]
        self.fingerprint = fp
        with open(os.path.join(d, "sshd_config"), "w") as f:
            f.write(f"""Port {self.port}
ListenAddress 127.0.0.1
HostKey {d}/host_key
AuthorizedKeysFile {d}/authorized_keys
PidFile {d}/sshd.pid
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
Subsystem sftp internal-sftp
LogLevel DEBUG1
MaxStartups 100
Ciphers {ciphers or "chacha20-poly1305@openssh.com,aes128-gcm@openssh.com,aes256-gcm@openssh.com,aes128-ctr,aes256-ctr"}
""")
        with open(os.path.join(d, "known_hosts"), "w") as f:
            pub = open(os.path.join(d, "host_key.pub")).read().split()
            f.write(f"[127.0.0.1]:{self.port} {pub[0]} {pub[1]}\n")
        os.makedirs("/run/sshd", exist_ok=True)
        self.log_path = os.path.join(d, "sshd.log")
        self.log = open(self.log_path, "wb")
        self.cgroup = CpuGroup(f"snapnest-bench-{os.getpid()}")
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f",
                                      os.path.join(d, "sshd_config")],
                                     stderr=self.log, stdout=subprocess.DEVNULL)
        self.cgroup.add(self.proc.pid)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("sshd exited: " + open(self.log_path).read())
                time.sleep(0.1)
        subprocess.run(self.ssh_cmd() + ["root@127.0.0.1", "true"], check=True)

    def ssh_cmd(self, cipher=None):
        cmd = ["ssh", "-F", "/dev/null", "-p", str(self.port), "-i", self.key,
               "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
               "-o", f"UserKnownHostsFile={self.dir}/known_hosts",
               "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes"]
        if cipher:
            cmd += ["-c", cipher]
        return cmd

    def log_size(self):
        self.log.flush()
        return os.path.getsize(self.log_path)

    def ciphers_since(self, offset):
        """Ciphers negotiated (server->client) by connections logged after `offset`."""
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        return sorted(set(re.findall(r"kex: server->client cipher: (\S+)", text)))

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        self.cgroup.remove()


class Measure:
    """One measured command: wall s, CPU box s (user+sys of the command and every process it
    waited for, through GNU time), CPU remote s (the sshd cgroup), peak RSS KiB (largest single process of the
    local tree), wire bytes (loopback), exit code."""

    def __init__(self, sshd, log_dir):
        self.sshd = sshd
        self.log_dir = log_dir
        self.n = 0

    def run(self, label, cmd, sync=True, env=None, stdout=None):
        self.n += 1
        log = os.path.join(self.log_dir, f"{self.n:03d}-{re.sub(r'[^A-Za-z0-9.-]+', '_', label)}.log")
        if sync:
            os.sync()
        off = self.sshd.log_size()
        wire0 = lo_bytes()
        cpu0 = self.sshd.cgroup.usage()
        t0 = time.monotonic()
        # Through GNU time: a child forked from this (large) Python process would report the
        # parent's RSS as its peak (maxrss survives exec), time's own child does not.
        ru_file = log + ".rusage"
        with open(log, "wb") as out:
            p = subprocess.run(["/usr/bin/time", "-q", "-f", "%U %S %M", "-o", ru_file, *cmd],
                               stdout=stdout if stdout is not None else out,
                               stderr=subprocess.STDOUT if stdout is None else out, env=env)
        wall = time.monotonic() - t0
        utime, stime, maxrss = open(ru_file).read().split()[-3:]
        # Session processes of sshd may still be accounting their last slice: settle briefly.
        time.sleep(0.05)
        r = {
            "wall": wall,
            "cpu_box": float(utime) + float(stime),
            "cpu_remote": self.sshd.cgroup.usage() - cpu0,
            "rss_kib": int(maxrss),
            "wire": lo_bytes() - wire0,
            "rc": p.returncode,
            "log": log,
            "ciphers": self.sshd.ciphers_since(off),
        }
        return r


def du_kib(paths):
    """du -sk over several paths in one call: hard links counted once, at their first path.
    Returns one figure per path (what that path adds to the ones before it)."""
    out = subprocess.run(["du", "-sk", *paths], check=True, capture_output=True,
                         text=True).stdout.splitlines()
    return [int(line.split("\t")[0]) for line in out]


def timed(cmd, **kw):
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, **kw)
    return time.monotonic() - t0
