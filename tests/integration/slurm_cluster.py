"""A Slurm cluster of booted systemd containers, as an OpenHPC site has it: a login node (slurmctld, munge;
the hub and traefik once barehub is installed there) and two compute nodes (slurmd, munge), each in its own
network namespace on a private bridge (testbed.netns: its addresses exist nowhere else, nothing leaves the
machine). /home and the hub's prefix are directories every node mounts (a bind mount standing in for NFS);
the munge key, slurm.conf and the users (local accounts, the same uids everywhere) are the same on every node.
cn2 has two GPUs in the "gpu" partition: Slurm's gres/gpu with two stand-in device files (character devices
with /dev/null's numbers). A count-only GRES (gres.conf without File=) is what the issue asked for, but Slurm
22.05 (Debian 12's) drops it, with and without Flags=CountOnly ("Removing file-less GPU gpu:(null) from final
GRES list": the node is then INVAL, 0 < 2); with the stand-ins a job gets what it gets on a real GPU node,
CUDA_VISIBLE_DEVICES and SLURM_JOB_GPUS.

Accounting (accounting=True, the default): Debian's slurmdbd and a real MariaDB on the login node, the cluster
registered with sacctmgr, every job's CPU, memory (jobacct_gather/linux, sampled every 2 s: the default 30 s
leaves a short test job with no memory sample) and gres/gpu recorded, as `barehub usage` reads them with sacct.
No AccountingStorageEnforce: jobs run without associations (barehub asks no site to manage Slurm accounts), and
sacct --allusers still lists them.

Clients run on the login node: `with cluster.on_login_node(): requests.get(...)` (see testbed.netns.entered).
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.integration import cluster as site
from tests.integration.helpers import PREFIX, Container
from testbed.netns import Network

LOGIN, COMPUTE = "login", ("cn1", "cn2")
ADDRESSES = {"login": "10.77.0.1", "cn1": "10.77.0.11", "cn2": "10.77.0.12"}
USERS = {"kim": (3201, "kim-Secret-5"), "leo": (3202, "leo-Secret-6")}  # name: (uid = gid, password)
CLUSTER = "barehub-cluster"
WITHOUT_ACCOUNTING = "JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n"
assert WITHOUT_ACCOUNTING in site.SLURM_COMMON
ACCOUNTING = f"""\
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost={LOGIN}
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
"""
SLURM_CONF = f"""\
ClusterName={CLUSTER}
SlurmctldHost={LOGIN}
{site.SLURM_COMMON.replace(WITHOUT_ACCOUNTING, ACCOUNTING)}GresTypes=gpu
SlurmdParameters=config_overrides
SchedulerParameters=bf_interval=2
NodeName=cn1 NodeAddr={ADDRESSES['cn1']} CPUs=4 RealMemory=16000 State=UNKNOWN
NodeName=cn2 NodeAddr={ADDRESSES['cn2']} CPUs=8 RealMemory=64000 Gres=gpu:2 State=UNKNOWN
PartitionName=cpu Nodes=cn1 Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=cn2 MaxTime=INFINITE State=UP
"""
# config_overrides: the nodes announce what slurm.conf says (these containers share this machine's 2 cores);
# bf_interval=2: the backfill scheduler (which estimates a waiting job's start) every 2 s, not every 30 s
DB_PASSWORD = "slurmdbd-Db-7"
SLURMDBD_CONF = f"""\
AuthType=auth/munge
DbdHost={LOGIN}
SlurmUser=slurm
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass={DB_PASSWORD}
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
"""
GPU_DEVICES = ("/dev/fakegpu0", "/dev/fakegpu1")
GRES_CONF = f"NodeName=cn2 Name=gpu File=/dev/fakegpu[0-{len(GPU_DEVICES) - 1}]\n"
# services this machine has enabled that no node needs (and PostgreSQL, which no container starts: testbed.container)
NOT_ON_NODES = ("nginx.service", "prometheus.service",
                "lemonldap-ng-fastcgi-server.service", "e2scrub_reap.service")


class SlurmCluster:
    def __init__(self, name: str, work: Path, binds: dict[str, str], accounting: bool = True):
        self.accounting = accounting
        self.slurm_conf = SLURM_CONF if accounting else SLURM_CONF.replace(ACCOUNTING, WITHOUT_ACCOUNTING)
        self.network = Network(name)
        self.shared_prefix = work / "prefix"  # PREFIX on every node (the site's shared file system)
        shared_dirs = {work / "home": "/home", self.shared_prefix: PREFIX}
        for directory in shared_dirs:
            directory.mkdir(mode=0o755)
            directory.chmod(0o755)
        self.nodes = {node: Container(f"{name}-{node}", binds if node == LOGIN else {}, work / f"{node}.log",
                                      shared={str(d): m for d, m in shared_dirs.items()},
                                      hostname=node, masked=NOT_ON_NODES) for node in ADDRESSES}

    @property
    def login(self) -> Container:
        return self.nodes[LOGIN]

    def on_login_node(self):
        """This thread's sockets (and the processes it starts) on the login node's network."""
        return self.network.entered(LOGIN)

    def start(self) -> float:
        """Network, nodes booted in parallel, users, munge and Slurm; returns the seconds it took."""
        start = time.monotonic()
        self.network.create()
        for node, box in self.nodes.items():
            box.network_namespace = self.network.add_node(node, ADDRESSES[node])
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda box: box.boot(), self.nodes.values()))
        for node, box in self.nodes.items():
            self.name_the_nodes(box)
            self.add_users(box, home=node == LOGIN)
            site.prepare_slurm_dirs(box)
        self.share_munge_key()
        self.start_slurm()
        return time.monotonic() - start

    def stop(self) -> None:
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda box: box.stop(), self.nodes.values()))
        self.network.remove()

    # --- the steps
    @staticmethod
    def name_the_nodes(box: Container) -> None:
        box.run("cat >> /etc/hosts", input="".join(f"{a} {n}\n" for n, a in ADDRESSES.items()))

    @staticmethod
    def add_users(box: Container, home: bool) -> None:
        for user, (uid, password) in USERS.items():
            box.run(f"groupadd -g {uid} {user} && useradd -u {uid} -g {uid} -s /bin/bash "
                    + (f"-m {user} && echo '{user}:{password}' | chpasswd" if home else f"-M {user}"))

    def share_munge_key(self) -> None:
        """A new key made on the login node, the same on every node."""
        self.login.run("mungekey --create --force")
        key = self.login.run("base64 -w0 /etc/munge/munge.key").stdout
        for box in self.nodes.values():
            box.run("base64 -d > /etc/munge/munge.key && chown munge:munge /etc/munge/munge.key "
                    "&& chmod 0400 /etc/munge/munge.key && systemctl restart munge", input=key)

    def start_accounting(self) -> None:
        """MariaDB (a new data directory: the containers' /var is empty), its user for slurmdbd, slurmdbd, and the
        cluster registered, before slurmctld starts (it then sends every job's record)."""
        box = self.login
        box.run("mariadb-install-db --user=mysql --skip-test-db --auth-root-authentication-method=socket "
                ">/dev/null && systemctl start mariadb", timeout=120)
        box.run("mariadb", input=f"CREATE USER 'slurm'@'localhost' IDENTIFIED BY '{DB_PASSWORD}';\n"
                                 "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';\n")
        box.run("cat > /etc/slurm/slurmdbd.conf && chown slurm:slurm /etc/slurm/slurmdbd.conf "
                "&& chmod 0600 /etc/slurm/slurmdbd.conf && systemctl start slurmdbd", input=SLURMDBD_CONF)
        box.run("for i in $(seq 200); do sacctmgr -n list cluster >/dev/null 2>&1 && exit 0; sleep 0.3; done; "
                "exit 1", timeout=90)
        box.run(f"sacctmgr -i add cluster {CLUSTER}")

    def start_slurm(self) -> None:
        for node, box in self.nodes.items():
            box.run("cat > /etc/slurm/slurm.conf", input=self.slurm_conf)
            box.run("cat > /etc/slurm/gres.conf", input=GRES_CONF)
            if node == "cn2":
                box.run(" && ".join(f"mknod -m 0666 {device} c 1 3" for device in GPU_DEVICES))
        if self.accounting:  # (sacctmgr finds slurmdbd through slurm.conf)
            self.start_accounting()
        for node, box in self.nodes.items():
            if node == LOGIN:
                box.run("systemctl stop slurmd; systemctl restart slurmctld")
            else:
                box.run("systemctl stop slurmctld; systemctl restart slurmd")
        site.wait_for_nodes(self.login, ",".join(COMPUTE))

    # --- what tests ask
    def jobs(self, user: str, server: str | None = "") -> list[dict[str, str]]:
        """The user's server jobs as squeue shows them on the login node: slurm.py names them jupyterhub-USER (her
        default server) and jupyterhub-USER-SERVER (a named one); server=None: all of them."""
        out = self.login.run(f"squeue -h -u {user} -o '%j|%i|%T|%P|%N|%C|%m|%b|%r'").stdout
        keys = ("id", "state", "partition", "node", "cpus", "memory", "gres", "reason")
        jobs = []
        for line in out.splitlines():
            name, *fields = line.split("|")
            if name == f"jupyterhub-{user}" or name.startswith(f"jupyterhub-{user}-"):
                job = {**dict(zip(keys, fields)), "server": name[len(f"jupyterhub-{user}-"):]}
                if server is None or job["server"] == server:
                    jobs.append(job)
        return jobs

