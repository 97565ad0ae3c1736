"""A small HPC site inside the test container: a real slapd (StartTLS, test LDIF) and a real
single-node Slurm (munge + slurmctld + slurmd, Debian's units).

LDAP users are also local unix accounts without passwords, standing in for what sssd/nslcd
provide on a real cluster: their passwords live only in LDAP.
"""
from __future__ import annotations

import textwrap

from tests.integration import pki
from tests.integration.helpers import Container

LDAP_PORT = 3389
BASE = "dc=barehub,dc=test"
ROOT_DN, ROOT_PW = f"cn=admin,{BASE}", "ldap-admin-pw"
CA_FILE = "/etc/barehub-test/ldap-ca.crt"  # made by pki.make_ca
USERS = {  # uid: (password, groups)
    "carol": ("carol-Ldap-1", ["jupyter-users"]),
    "erin": ("erin-Ldap-2", ["jupyter-admins"]),
    "dave": ("dave-Ldap-3", []),  # has an LDAP account, but is in no allowed group
}


def setup_ldap(box: Container) -> None:
    """Once per container: the LDAP and OIDC modules share it."""
    if box.run("systemctl is-active test-slapd", check=False).stdout.strip() == "active":
        return
    box.run("mkdir -p /var/lib/barehub-ldap")
    pki.make_ca(box, "/etc/barehub-test", "ldap")
    cert, key = pki.issue(box, "/etc/barehub-test", "ldap", "ldap", ["localhost", "127.0.0.1"])
    box.run(f"chown openldap {key}")
    rootpw = box.run(f"slappasswd -s {ROOT_PW}").stdout.strip()
    box.run("cat > /etc/barehub-test/slapd.conf", input=textwrap.dedent(f"""\
        include /etc/ldap/schema/core.schema
        include /etc/ldap/schema/cosine.schema
        include /etc/ldap/schema/inetorgperson.schema
        include /etc/ldap/schema/nis.schema
        modulepath /usr/lib/ldap
        moduleload back_mdb
        pidfile /var/lib/barehub-ldap/slapd.pid
        TLSCACertificateFile {CA_FILE}
        TLSCertificateFile {cert}
        TLSCertificateKeyFile {key}
        database mdb
        suffix "{BASE}"
        rootdn "{ROOT_DN}"
        rootpw {rootpw}
        directory /var/lib/barehub-ldap
        access to attrs=userPassword by anonymous auth by self write by * none
        access to * by * read
        """))
    box.run("chown -R openldap:openldap /var/lib/barehub-ldap")
    box.run(f"systemd-run --unit=test-slapd /usr/sbin/slapd -d 0 -u openldap -g openldap "
            f"-f /etc/barehub-test/slapd.conf -h ldap://127.0.0.1:{LDAP_PORT}/")
    entries = [f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\no: barehub test\ndc: barehub",
               f"dn: ou=people,{BASE}\nobjectClass: organizationalUnit\nou: people",
               f"dn: ou=groups,{BASE}\nobjectClass: organizationalUnit\nou: groups"]
    for uid, (password, _) in USERS.items():
        hashed = box.run(f"slappasswd -s {password}").stdout.strip()
        entries.append(f"dn: uid={uid},ou=people,{BASE}\nobjectClass: inetOrgPerson\nuid: {uid}\n"
                       f"cn: {uid.title()} Tester\nsn: Tester\nmail: {uid}@barehub.test\nuserPassword: {hashed}")
    for group in ("jupyter-users", "jupyter-admins"):
        members = [f"member: uid={u},ou=people,{BASE}" for u, (_, groups) in USERS.items() if group in groups]
        entries.append(f"dn: cn={group},ou=groups,{BASE}\nobjectClass: groupOfNames\ncn: {group}\n" + "\n".join(members))
    ldif = "\n\n".join(entries) + "\n"
    box.run(f"for i in $(seq 50); do ldapsearch -x -H ldap://127.0.0.1:{LDAP_PORT} -b '' -s base >/dev/null 2>&1 "
            f"&& break; sleep 0.2; done")
    box.run(f"ldapadd -x -H ldap://127.0.0.1:{LDAP_PORT} -D '{ROOT_DN}' -w {ROOT_PW}", input=ldif)
    for uid in USERS:
        box.run(f"useradd --create-home --shell /bin/bash {uid}")


# slurm.conf's settings every test cluster shares (no cgroups in these containers: linuxproc, task/none)
SLURM_COMMON = """\
SlurmUser=slurm
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
"""


def prepare_slurm_dirs(box: Container) -> None:
    box.run("mkdir -p /var/lib/munge /var/log/munge && chown munge:munge /var/lib/munge /var/log/munge "
            "&& chmod 0700 /var/lib/munge /var/log/munge")
    box.run("mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm "
            "&& chown slurm:slurm /var/spool/slurmctld /var/log/slurm")


def wait_for_nodes(box: Container, nodes: str) -> None:
    """Until Slurm schedules on `nodes` (sinfo's node list syntax); bounded."""
    box.run(f"for i in $(seq 100); do [ -z \"$(sinfo -h -o %t -n {nodes} | grep -vE '^(idle|mix|alloc)')\" ] "
            f"&& [ -n \"$(sinfo -h -o %t -n {nodes})\" ] && exit 0; sleep 0.3; done; sinfo; exit 1", timeout=60)


def setup_slurm(box: Container) -> str:
    """A one-node Slurm in the session container. Returns the node's name."""
    node = box.run("hostname").stdout.strip()
    box.run(f"grep -q ' {node}$' /etc/hosts || echo '127.0.1.1 {node}' >> /etc/hosts")
    prepare_slurm_dirs(box)
    box.run("test -s /etc/munge/munge.key || mungekey --create --force")
    box.run("cat > /etc/slurm/slurm.conf", input=f"ClusterName=barehub-test\nSlurmctldHost={node}\n{SLURM_COMMON}"
            f"NodeName={node} CPUs=2 RealMemory=8000 State=UNKNOWN\n"
            f"PartitionName=cpu Nodes={node} Default=YES MaxTime=INFINITE State=UP\n")
    box.run("systemctl restart munge && systemctl restart slurmctld && systemctl restart slurmd")
    wait_for_nodes(box, node)
    return node
