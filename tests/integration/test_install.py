"""The installed tree (issue 15): `meson install --destdir` of the build under test, then
what a user, an administrator or a packager does with what it installed.

- The files land where they belong: the binary, smtptap(1), the sample configuration in
  SYSCONFDIR/smtptap, the systemd unit, the sysusers.d entry, the bash completion; a
  second install keeps an edited configuration.
- The man page renders with `man -l` and with `groff -ww` without a warning, and documents
  every flag of --help, every key of the configuration file (proxy/config.c, fault.c), every
  transcript marker of the README and every exit status.
- The unit passes `systemd-analyze verify` (no output at all) in a root made of the
  installed tree plus the host's own units and kill(1) (its ExecReload), with MANPATH on the
  installed man page (Documentation=); `systemd-analyze security --offline` rates its
  hardening at 2.0 or better. Its ExecStart, paths moved into the tree and %S into a
  temporary directory, parses the installed configuration and makes the CA where the unit
  says. What cannot be done here: start the unit (systemd is not PID 1 in the test's
  container), so the sandbox options are checked by systemd's own parser and rating, not
  by running smtptap under them.
- The installed configuration parses with `smtptap -c` and serves a message.
- The completion offers every long flag and the fixed values.
- The README's transparent-mode example, verbatim, in a network namespace: the smtptap user
  made by `systemd-sysusers --root` from the installed sysusers.d entry (in a copy of
  /etc/passwd and /etc/group bind-mounted in a private mount namespace, so the host's user
  database is never touched), smtptap run as that user, the README's nft commands run as
  written, a client that dials the real server reaches it through smtptap.
"""

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

import harness
from test_transparent import SERVER, Netns, NsServer

BIN = Path(harness.smtptap_bin())
BUILD = BIN.parent
README = harness.ROOT / "README.md"


def meson(*args, timeout=120):
    exe = shutil.which("meson")
    assert exe, "meson is not on PATH"
    return harness.run([exe, *args], timeout)


def introspect(what):
    rc, out, err = meson("introspect", str(BUILD), what)
    assert rc == 0, f"meson introspect {what} failed:\n{err}"
    return json.loads(out)


class Tree:
    """An installed tree: root (the destdir) and the install paths the build chose."""

    def __init__(self, root: Path):
        self.root = root
        opts = {o["name"]: o["value"] for o in introspect("--buildoptions")}
        prefix = Path(opts["prefix"])
        self.sysconfdir = prefix / opts["sysconfdir"]  # an absolute sysconfdir stays
        # installed path -> source or build file, from meson itself
        self.installed = {Path(dst): src for src, dst in introspect("--installed").items()}

    def path(self, installed: Path) -> Path:
        """Where an installed path is in the tree."""
        return self.root / Path(installed).relative_to("/")

    def find(self, name: str) -> Path:
        """The installed path (without the destdir) whose file name is `name`."""
        hits = [p for p in self.installed if p.name == name]
        assert len(hits) == 1, f"meson installs {len(hits)} files named {name}: {hits}"
        return hits[0]

    @property
    def bin(self):
        """The installed binary, in the tree."""
        hits = [p for p in self.installed if p.name == "smtptap" and p.parent.name == "bin"]
        assert len(hits) == 1, f"meson installs {len(hits)} binaries: {hits}"
        return self.path(hits[0])

    @property
    def conf(self):
        return self.sysconfdir / "smtptap" / "smtptap.conf"

    @property
    def man(self):
        return self.find("smtptap.1")

    @property
    def unit(self):
        return self.find("smtptap.service")

    @property
    def sysusers(self):
        hits = [p for p in self.installed if p.parent.name == "sysusers.d"]
        assert len(hits) == 1, f"meson installs {len(hits)} sysusers.d entries: {hits}"
        return hits[0]

    @property
    def completion(self):
        hits = [p for p in self.installed if p.parent.name == "completions"]
        assert len(hits) == 1, f"meson installs {len(hits)} bash completions: {hits}"
        return hits[0]


def install(destdir: Path):
    rc, out, err = meson("install", "-C", str(BUILD), "--destdir", str(destdir), "--no-rebuild")
    assert rc == 0, f"meson install --destdir {destdir} failed:\n{out}\n{err}"
    return out


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    assert (BUILD / "meson-info").is_dir(), f"{BIN} is not in a meson build directory"
    root = tmp_path_factory.mktemp("destdir")
    install(root)
    return Tree(root)


# ---- what is installed --------------------------------------------------------------------


def test_install_puts_every_file_in_its_place(tree):
    for name in ("bin", "man", "unit", "sysusers", "completion"):
        p = getattr(tree, name)
        if name != "bin":
            p = tree.path(p)
        assert p.is_file(), f"{name}: {p} was not installed"
    assert os.access(tree.bin, os.X_OK)
    assert tree.man.parent.name == "man1" and tree.man.parent.parent.name == "man", tree.man
    assert tree.unit.parent.parts[-2:] == ("systemd", "system"), tree.unit
    assert tree.completion.parts[-3:] == ("bash-completion", "completions", "smtptap"), \
        tree.completion
    conf = tree.path(tree.conf)
    assert conf.is_file(), f"no configuration at {tree.conf} (SYSCONFDIR/smtptap/smtptap.conf)"
    assert conf.read_bytes() == (harness.ROOT / "conf" / "smtptap.conf").read_bytes()
    assert "u smtptap" in re.sub(r"\s+", " ", tree.path(tree.sysusers).read_text())


def test_reinstall_keeps_an_edited_configuration(tmp_path):
    install(tmp_path)
    t = Tree(tmp_path)
    conf = t.path(t.conf)
    edited = conf.read_text().replace("target = sink", "target = transparent")
    conf.write_text(edited)
    install(tmp_path)
    assert conf.read_text() == edited, "meson install replaced an edited configuration"


# ---- the man page ---------------------------------------------------------------------------


def render(tree, *extra_env):
    env = dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat", LC_ALL="C.UTF-8")
    man = harness.tool_path("man")
    rc, out, err = harness.run([man, "--warnings=w", "-l", str(tree.path(tree.man))], env=env)
    return rc, out, err


def plain_text(tree):
    """The page as text, no hyphenation and long lines, so words can be searched for."""
    rc, out, err = harness.run([harness.tool_path("groff"), "-ww", "-man", "-Tutf8", "-P-cbou",
                                "-rHY=0", "-rLL=400n", str(tree.path(tree.man))])
    assert rc == 0 and err == "", f"groff failed or warned:\n{err}"
    return out.replace("\u2010", "-").replace("\u2212", "-")


def section(text, title):
    m = re.search(rf"^{re.escape(title)}\n(.*?)(?=^[A-Z][A-Z ]+\n|\Z)", text, re.M | re.S)
    assert m, f"the man page has no {title} section"
    return m.group(1)


def test_man_page_renders_without_warnings(tree, need):
    need("man", "groff")
    rc, out, err = render(tree)
    assert rc == 0 and err == "", f"man -l: rc {rc}\n{err}"
    assert "smtptap - transparent SMTP debugging proxy" in out, out[:500]
    for title in ("SYNOPSIS", "OPTIONS", "CONFIGURATION FILE", "TRANSCRIPT", "EXIT STATUS",
                  "FILES", "EXAMPLES"):
        assert re.search(rf"^{title}$", out, re.M), f"no {title} section:\n{out}"
    rc, _, err = harness.run([harness.tool_path("groff"), "-ww", "-man", "-Tutf8", "-z",
                              str(tree.path(tree.man))])
    assert rc == 0 and err == "", f"groff -ww warns:\n{err}"


def help_flags():
    rc, out, _ = harness.run([str(BIN), "--help"])
    assert rc == 0
    long_flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", out))
    short = set(re.findall(r"(?<![\w-])(-[a-zA-Z])\b", out))
    assert {"--listen", "--upstream", "--fault", "--keylog"} <= long_flags, out
    return long_flags, short


def test_man_page_documents_every_flag(tree, need):
    need("groff")
    options = section(plain_text(tree), "OPTIONS")
    long_flags, short = help_flags()
    heads = [l.strip() for l in options.splitlines() if re.match(r"^ {7}-", l)]
    for f in sorted(long_flags):
        assert any(re.search(rf"(^|[ ,]){re.escape(f)}([ =,]|$)", h) for h in heads), \
            f"{f} (from --help) has no entry in OPTIONS; entries: {heads}"
    for f in sorted(short):
        assert any(h.startswith(f + ",") for h in heads), f"{f} has no entry in OPTIONS"
    # and nothing the program does not have
    for h in heads:
        for f in re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", h):
            assert f in long_flags or f == "--colour", f"OPTIONS documents {f}, smtptap has none"


def config_keys():
    """(section, key) for every key config.c reads, and the keys of a [fault NAME]."""
    src = (harness.ROOT / "proxy" / "config.c").read_text()
    keys = re.findall(r'\{"(\w+)", "(\w+)", S_\w+\}', src)
    assert ("listen", "address") in keys and len(keys) >= 16, keys
    fault = (harness.ROOT / "proxy" / "fault.c").read_text()
    table = re.search(r"rule_keys\[\] = \{(.*?)\};", fault, re.S).group(1)
    rule_keys = re.findall(r'\{"(\w+)", \w+\}', table)
    assert set(rule_keys) == {"on", "match", "nth", "probability", "action"}, rule_keys
    return keys + [("fault NAME", k) for k in rule_keys]


def test_man_page_documents_every_config_key(tree, need):
    need("groff")
    conf = section(plain_text(tree), "CONFIGURATION FILE")
    parts = re.split(r"^ {3}\[([^\]]+)\]\n", conf, flags=re.M)
    sections = dict(zip(parts[1::2], parts[2::2]))
    for sec, key in config_keys():
        assert sec in sections, f"no [{sec}] in CONFIGURATION FILE: {list(sections)}"
        assert re.search(rf"^ {{7}}{key} = ", sections[sec], re.M), \
            f"[{sec}] {key} is not documented in the man page"


def test_sample_configuration_has_every_key(tree):
    text = tree.path(tree.conf).read_text()
    for sec, key in config_keys():
        if sec == "fault NAME":
            assert re.search(rf"^; {key} = ", text, re.M), f"the sample shows no fault key {key}"
            continue
        m = re.search(rf"^\[{sec}\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
        assert m and re.search(rf"^{key} =", m.group(1), re.M), \
            f"the sample configuration has no [{sec}] {key}"


def test_man_page_documents_markers_and_exit_statuses(tree, need):
    need("groff")
    text = plain_text(tree)
    readme = README.read_text()
    table = section_of_readme(readme, "## The transcript")
    markers = []
    for row in re.findall(r"^\| (.+?) \| .+ \|$", table, re.M):
        markers += [m.strip() for m in re.findall(r"`([^`]+)`", row)]
    assert {"->", "<-", "==", "**", "~>", "[smtptap]"} <= set(markers), markers
    transcript = section(text, "TRANSCRIPT")
    heads = [l.strip() for l in transcript.splitlines() if re.match(r"^ {7}\S", l)]
    for m in markers:
        assert any(m in [x.strip() for x in h.split(",")] for h in heads), \
            f"marker {m!r} (README) is not in the man page's TRANSCRIPT: {heads}"
    rc, out, _ = harness.run([str(BIN), "--help"])
    codes = re.findall(r"(\d+) [a-z]", re.search(r"Exit status:(.*)", out).group(1))
    exits = section(text, "EXIT STATUS")
    for c in codes:
        assert re.search(rf"^ {{7}}{c}$", exits, re.M), f"exit status {c} is not documented"


def section_of_readme(text, heading):
    m = re.search(rf"^{re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"README has no {heading}"
    return m.group(1)


# ---- the configuration ----------------------------------------------------------------------


def test_installed_configuration_parses_and_serves(tree, tap, tmp_path):
    conf = tree.path(tree.conf)
    rc, out, err = harness.run([str(tree.bin), "-c", str(conf), "--ca-dir", str(tmp_path / "ca"),
                                "--print-ca"])
    assert rc == 0 and out.startswith("-----BEGIN CERTIFICATE-----"), f"rc {rc}\n{err}"
    t = tap(["-c", str(conf)], binary=str(tree.bin))  # --listen 127.0.0.1:0 wins over the file
    harness.smtplib_send(t.host, t.port, "alice@example.org", ["bob@example.net"],
                         harness.make_message("installed"))
    t.wait_for(r"^#1 \+\S+ <-  250 2\.0\.0 Ok: queued as")
    assert "upstream sink (built-in)" in t.transcript()


# ---- the systemd unit -------------------------------------------------------------------------


def unit_key(tree, key):
    vals = re.findall(rf"^{key}=(.*)$", tree.path(tree.unit).read_text(), re.M)
    return vals


@pytest.fixture
def verify_root(tree, tmp_path):
    """The installed tree, plus what the unit names from the system: the host's units
    (sysinit.target and the other default dependencies) and kill(1)."""
    root = tmp_path / "root"
    shutil.copytree(tree.root, root, symlinks=True)
    units = Path("/usr/lib/systemd/system")
    if not units.is_dir():
        units = Path("/lib/systemd/system")
    shutil.copytree(units, root / "usr/lib/systemd/system", symlinks=True, dirs_exist_ok=True)
    kill = unit_key(tree, "ExecReload")[0].split()[0]
    (root / kill.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(os.path.realpath(kill), root / kill.lstrip("/"))
    return root


def test_unit_passes_systemd_analyze_verify(tree, verify_root, need):
    need("systemd-analyze", "man")
    env = dict(os.environ, MANPATH=str(tree.path(tree.man).parent.parent), SYSTEMD_PAGER="",
               SYSTEMD_LOG_COLOR="0")
    rc, out, err = harness.run([harness.tool_path("systemd-analyze"), "verify",
                                f"--root={verify_root}", "smtptap.service"], env=env)
    assert rc == 0 and out == "" and err == "", f"systemd-analyze verify: rc {rc}\n{out}{err}"
    # the same check fails on a broken unit (the test can fail)
    unit = verify_root / tree.unit.relative_to("/")
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=stric"))
    rc, out, err = harness.run([harness.tool_path("systemd-analyze"), "verify",
                                f"--root={verify_root}", "smtptap.service"], env=env)
    assert "smtptap.service:" in out + err and "stric" in out + err, out + err


def test_unit_is_hardened(tree, verify_root, need):
    need("systemd-analyze")
    text = tree.path(tree.unit).read_text()
    for line in ("User=smtptap", "ProtectSystem=strict", "PrivateTmp=yes", "NoNewPrivileges=yes",
                 "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
                 "AmbientCapabilities=CAP_NET_BIND_SERVICE", "StateDirectory=smtptap"):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), f"the unit lacks {line}"
    rc, out, err = harness.run([harness.tool_path("systemd-analyze"), "security", "--offline=yes",
                                f"--root={verify_root}", "--threshold=20", "--no-pager",
                                "smtptap.service"], env=dict(os.environ, SYSTEMD_COLORS="0"))
    level = re.search(r"Overall exposure level for smtptap.service: ([\d.]+)", out)
    assert rc == 0 and level, f"exposure above 2.0 or no rating: rc {rc}\n{out}\n{err}"


def test_unit_exec_start_runs(tree, tmp_path):
    """ExecStart as systemd would run it: the installed configuration, the CA in the state
    directory (%S = /var/lib for a system unit, here a temporary directory)."""
    (line,) = unit_key(tree, "ExecStart")
    state = tmp_path / "state"
    argv = []
    for a in shlex.split(line.replace("%S", str(state))):
        if a.startswith("/") and not a.startswith(str(state)):
            a = str(tree.path(Path(a)))
        argv.append(a)
    assert Path(argv[0]) == tree.bin and str(tree.path(tree.conf)) in argv, argv
    rc, out, err = harness.run(argv + ["--print-ca"])
    assert rc == 0 and out.startswith("-----BEGIN CERTIFICATE-----"), f"{argv}: rc {rc}\n{err}"
    ca = state / "smtptap" / "ca"
    assert (ca / "ca.pem").is_file() and (ca / "ca.key").stat().st_mode & 0o077 == 0


# ---- bash completion --------------------------------------------------------------------------


def complete(tree, *words):
    script = (f"source {shlex.quote(str(tree.path(tree.completion)))}\n"
              "complete -p smtptap >/dev/null || exit 3\n"
              "COMP_WORDS=(\"$@\"); COMP_CWORD=$(($# - 1)); _smtptap\n"
              "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    rc, out, err = harness.run(["bash", "-c", script, "bash", "smtptap", *words])
    assert rc == 0, f"completion failed: rc {rc}\n{err}"
    return out.split()


def test_bash_completion(tree):
    long_flags, _ = help_flags()
    offered = {w.rstrip("=") for w in complete(tree, "--")}
    assert offered == long_flags, (f"not offered: {sorted(long_flags - offered)}; "
                                   f"not a flag: {sorted(offered - long_flags)}")
    assert complete(tree, "--client-starttls", "") == ["offer", "strip", "passthrough"]
    assert complete(tree, "--color", "=", "") == ["auto", "always", "never"]
    assert complete(tree, "-u", "tr") == ["transparent"]
    assert complete(tree, "--format", "text,") == ["text,jsonl", "text,pcap", "text,eml"]
    assert complete(tree, "--listen", "") == []


# ---- the README's transparent mode, verbatim ----------------------------------------------


def readme_transparent_example():
    """The shell block after the README's paragraph on transparent mode."""
    text = README.read_text()
    m = re.search(r"^Transparent mode:.*?```sh\n(.*?)```", text, re.M | re.S)
    assert m, "README has no transparent-mode example"
    lines = [l for l in m.group(1).splitlines() if l.strip()]
    assert lines[0].startswith("smtptap ") and all(l.startswith("nft ") for l in lines[1:]), lines
    return lines


def test_man_page_shows_the_readme_transparent_example(tree, need):
    need("groff")
    text = section(plain_text(tree), "TRANSPARENT MODE")
    shown = [l.strip() for l in text.splitlines() if re.match(r"^ {11}(smtptap|nft) ", l)]
    assert shown == readme_transparent_example(), shown


@pytest.fixture
def users_root(tree, tmp_path):
    """A copy of the installed tree with a copy of the host's user database, to which
    systemd-sysusers --root added the users of the installed sysusers.d entries."""
    root = tmp_path / "users-root"
    shutil.copytree(tree.root, root, symlinks=True)
    (root / "etc").mkdir(exist_ok=True)
    for f in ("passwd", "group", "shadow", "gshadow"):
        if os.path.exists(f"/etc/{f}"):
            shutil.copy2(f"/etc/{f}", root / "etc" / f)
    rc, out, err = harness.run([harness.tool_path("systemd-sysusers"), f"--root={root}"])
    assert rc == 0, f"systemd-sysusers --root={root}: rc {rc}\n{out}\n{err}"
    return root


def test_readme_transparent_example_verbatim(tree, users_root, tap, need):
    need("ip", "nft", "swaks", "systemd-sysusers", "unshare", "setpriv")
    lines = readme_transparent_example()
    user = re.search(r"meta skuid != (\S+)", lines[-1]).group(1)
    assert unit_key(tree, "User") == [user], "the rule exempts another user than the unit's"
    entry = next((l.split(":") for l in (users_root / "etc/passwd").read_text().splitlines()
                  if l.startswith(user + ":")), None)
    assert entry, f"systemd-sysusers made no user {user} from {tree.sysusers}"
    uid = int(entry[2])
    host_passwd = Path("/etc/passwd").read_bytes()

    name = f"smtptap-i{os.getpid()}-{secrets.token_hex(3)}"
    r = subprocess.run([harness.tool_path("ip"), "netns", "add", name], capture_output=True,
                       text=True)
    if r.returncode != 0:
        pytest.skip(f"`ip netns add` is not permitted here: {r.stderr.strip()}")
    ns = Netns(name)
    ca_home = tempfile.mkdtemp(prefix="smtptap-user-")  # the user's $XDG_DATA_HOME
    try:
        os.chmod(ca_home, 0o700)
        os.chown(ca_home, uid, uid)
        ns.check(["ip", "link", "set", "lo", "up"], "loopback up")
        ns.check(["ip", "addr", "add", f"{SERVER['ipv4']}/32", "dev", "lo"], "IPv4 address")
        srv = NsServer(ns, SERVER["ipv4"], 25)

        # Every command sees the user database with the smtptap user, in a private mount
        # namespace, inside the network namespace.
        def with_user(*argv):
            return [harness.tool_path("unshare"), "--mount", "sh", "-c",
                    'mount --bind "$0/etc/passwd" /etc/passwd && '
                    'mount --bind "$0/etc/group" /etc/group && exec "$@"', str(users_root),
                    harness.tool_path("ip"), "netns", "exec", name, *argv]

        wrapper = Path(ca_home) / "smtptap-as-user"
        wrapper.write_text("#!/bin/sh\nexec " + " ".join(shlex.quote(a) for a in with_user(
            harness.tool_path("setpriv"), f"--reuid={user}", f"--regid={user}", "--init-groups",
            str(tree.bin))) + ' "$@"\n')
        wrapper.chmod(0o755)
        argv = shlex.split(lines[0])
        t = tap(argv[1:], binary=str(wrapper), listen=None, color=None,
                extra_env={"XDG_DATA_HOME": ca_home})
        for line in lines[1:]:
            rc, out, err = harness.run(with_user("sh", "-c", line), timeout=20)
            assert rc == 0, f"README's `{line}` failed: rc {rc}\n{err}"

        rc, out, err = harness.run(ns.cmd([harness.tool_path("swaks"), "--server",
                                           f"{SERVER['ipv4']}:25", "--timeout", "15",
                                           "--from", "alice@example.org",
                                           "--to", "bob@example.net"]), timeout=30)
        assert rc == 0, f"swaks to {SERVER['ipv4']}:25 through the README's rule failed:\n{out}{err}"
        assert harness.swaks_replies(out)[0] == srv.greeting, out
        msg = srv.wait_for_messages(1)[0]
        assert msg["mail_from"] == "alice@example.org"
        t.wait_session_end()
        assert t.sessions() == [1], f"smtptap's own connection was redirected:\n{t.transcript()}"
        assert re.search(rf"^#1 \+\S+ == upstream {re.escape(SERVER['ipv4'])}:25 connected from ",
                         t.transcript(), re.M), t.transcript()
        rc, out, _ = harness.run(ns.cmd(["nft", "list", "chain", "ip", "nat", "output"]))
        assert f"meta skuid != {uid}" in out, out
        t.stop()
    finally:
        ns.close()
        shutil.rmtree(ca_home, ignore_errors=True)
    assert Path("/etc/passwd").read_bytes() == host_passwd, "the host's /etc/passwd changed"
