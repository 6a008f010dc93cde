"""Capability tables and patterns for command-risk scoring (sans-IO data).

Our own common knowledge of Unix binaries (what spawns a shell, talks to the network, changes privileges,
writes disks or schedules persistence), written for this project. Nothing here is derived from GTFOBins or any
other GPL data set; GTFOBins only measures these rules in the tests.
"""

from __future__ import annotations

import re

_MAX_DEPTH = 4
_MAX_CHARS = 16384

SHELLS = frozenset(
    [
        "sh",
        "bash",
        "dash",
        "zsh",
        "ksh",
        "mksh",
        "pdksh",
        "csh",
        "tcsh",
        "fish",
        "ash",
        "yash",
        "rbash",
        "posh",
        "busybox",
        "toybox",
        "elvish",
        "nu",
        "xonsh",
        "ion",
        "osh",
        "oksh",
        "rc",
        "es",
        "sash",
    ]
)
# Interactive programs with a documented way out to a shell (pagers, editors, REPL-like clients).
INTERACTIVE = {
    "vi": 0.5,
    "vim": 0.5,
    "nvim": 0.5,
    "view": 0.5,
    "rvim": 0.5,
    "vimdiff": 0.5,
    "ed": 0.5,
    "ex": 0.5,
    "nano": 0.5,
    "pico": 0.5,
    "emacs": 0.5,
    "joe": 0.5,
    "mcedit": 0.5,
    "less": 0.5,
    "more": 0.5,
    "most": 0.5,
    "pg": 0.5,
    "man": 0.35,
    "minicom": 0.5,
    "ncdu": 0.5,
    "screen": 0.5,
    "tmux": 0.5,
    "mc": 0.5,
    "jshell": 0.5,
    "irb": 0.5,
    "ghci": 0.5,
    "sqlite3": 0.3,
    "mysql": 0.3,
    "psql": 0.3,
    "ftp": 0.5,
    "telnet": 0.5,
    "ranger": 0.5,
    "nnn": 0.5,
    "vifm": 0.5,
    "busctl": 0.3,
}
INTERPRETERS = frozenset(
    [
        "python",
        "python2",
        "python3",
        "pypy",
        "pypy3",
        "perl",
        "ruby",
        "irb",
        "node",
        "nodejs",
        "deno",
        "bun",
        "php",
        "lua",
        "luajit",
        "tclsh",
        "wish",
        "jjs",
        "jrunscript",
        "pwsh",
        "powershell",
        "osascript",
        "rscript",
        "julia",
        "guile",
        "expect",
        "gdb",
        "scala",
        "groovy",
        "ghci",
        "racket",
        "gawk",
        "awk",
        "mawk",
        "nawk",
        "busybox",
        "octave",
        "octave-cli",
    ]
)
_AWKS = frozenset(["awk", "gawk", "mawk", "nawk"])
_INLINE_FLAGS = {
    "python": ("-c",),
    "pypy": ("-c",),
    "perl": ("-e", "-E"),
    "ruby": ("-e",),
    "irb": ("-e",),
    "node": ("-e", "--eval", "-p", "--print"),
    "deno": ("eval",),
    "bun": ("-e", "--eval"),
    "php": ("-r",),
    "lua": ("-e",),
    "luajit": ("-e",),
    "jjs": ("-e",),
    "jrunscript": ("-e",),
    "pwsh": ("-c", "-command"),
    "powershell": ("-c", "-command"),
    "osascript": ("-e",),
    "rscript": ("-e",),
    "julia": ("-e",),
    "guile": ("-c",),
    "expect": ("-c",),
    "gdb": ("-ex", "-batch"),
    "tclsh": (),
    "octave": ("--eval",),
    "octave-cli": ("--eval",),
}
NETWORK = frozenset(
    [
        "curl",
        "wget",
        "nc",
        "ncat",
        "netcat",
        "socat",
        "telnet",
        "ssh",
        "scp",
        "sftp",
        "ftp",
        "tftp",
        "rsync",
        "smbclient",
        "whois",
        "lftp",
        "aria2c",
        "openssl",
        "busybox",
        "finger",
        "ftp-ssl",
        "httpie",
        "http",
        "xh",
        "fetch",
        "ncftp",
        "sshpass",
        "hping3",
        "ab",
        "lwp-download",
        "lwp-request",
        "lwp-mirror",
        "nmap",
        "masscan",
        "ngrok",
        "cloudflared",
        "chisel",
        "frpc",
        "rlogin",
        "rsh",
        "socket",
    ]
)
DECODERS = frozenset(
    ["base64", "base32", "xxd", "uudecode", "openssl", "rev", "printf", "echo", "gzip", "zcat"]
)
PRIVILEGE = {
    "sudo": 0.55,
    "su": 0.6,
    "doas": 0.55,
    "pkexec": 0.6,
    "runuser": 0.6,
    "setpriv": 0.6,
    "capsh": 0.6,
    "chroot": 0.5,
    "nsenter": 0.6,
    "unshare": 0.5,
    "setcap": 0.65,
    "visudo": 0.7,
    "usermod": 0.6,
    "useradd": 0.6,
    "adduser": 0.6,
    "passwd": 0.55,
    "chpasswd": 0.7,
    "groupadd": 0.5,
    "gpasswd": 0.6,
    "newgrp": 0.5,
    "sg": 0.5,
    "insmod": 0.7,
    "modprobe": 0.6,
    "rmmod": 0.6,
}
DISK = frozenset(
    [
        "mkfs",
        "mkfs.ext2",
        "mkfs.ext3",
        "mkfs.ext4",
        "mkfs.vfat",
        "mkfs.fat",
        "mkfs.xfs",
        "mkfs.btrfs",
        "mke2fs",
        "mkswap",
        "wipefs",
        "fdisk",
        "sfdisk",
        "gdisk",
        "cfdisk",
        "parted",
        "sgdisk",
        "blkdiscard",
        "hdparm",
    ]
)
# Programs that are thin wrappers: the real command follows their options.
WRAPPERS = frozenset(
    [
        "sudo",
        "doas",
        "env",
        "nice",
        "nohup",
        "timeout",
        "time",
        "stdbuf",
        "setsid",
        "ionice",
        "taskset",
        "chrt",
        "xargs",
        "flock",
        "busybox",
        "toybox",
        "command",
        "builtin",
        "exec",
        "strace",
        "ltrace",
        "unbuffer",
        "script",
        "watch",
        "runuser",
        "chroot",
        "setarch",
        "linux32",
        "linux64",
        "torify",
        "proxychains",
        "proxychains4",
        "firejail",
        "systemd-run",
        "start-stop-daemon",
        "su",
        "pkexec",
        "capsh",
        "setpriv",
        "nsenter",
        "unshare",
        "sg",
        "fakeroot",
    ]
)
_WRAPPER_ARG_OPTS = {
    "sudo": frozenset(["-u", "-g", "-c", "-d", "-h", "-p", "-r", "-t", "-U", "-C", "-D", "-R", "-T"]),
    "timeout": frozenset(["-s", "-k", "--signal", "--kill-after"]),
    "nice": frozenset(["-n", "--adjustment"]),
    "ionice": frozenset(["-c", "-n", "-p"]),
    "taskset": frozenset(["-c", "-p"]),
    "stdbuf": frozenset(["-i", "-o", "-e"]),
    "xargs": frozenset(["-I", "-n", "-P", "-d", "-a", "-L", "-s", "-E", "--delimiter", "--max-args"]),
    "flock": frozenset(["-w", "-E", "-c", "--timeout"]),
    "env": frozenset(["-u", "-C", "-S", "--unset", "--chdir"]),
    "runuser": frozenset(["-u", "-g", "-G", "-l"]),
    "su": frozenset(["-s", "-g", "-G", "--shell"]),
    "chroot": frozenset(["--userspec", "--groups"]),
    "setpriv": frozenset(["--reuid", "--regid", "--groups"]),
}
_INFO_PROGRAMS = frozenset(
    [
        "which",
        "type",
        "whereis",
        "whatis",
        "apropos",
        "man",
        "info",
        "help",
        "tldr",
        "echo",
        "printf",
        "apt",
        "apt-get",
        "apt-cache",
        "dpkg",
        "brew",
        "dnf",
        "yum",
        "pacman",
        "apk",
        "pip",
        "pip3",
        "pipx",
        "npm",
        "pnpm",
        "yarn",
        "cargo",
        "gem",
        "go",
        "snap",
        "flatpak",
        "git",
        "grep",
        "rg",
        "ag",
        "ack",
    ]
)
DANGEROUS_ENV = re.compile(
    r"^(?:LD_\w+|DYLD_\w+|BASH_ENV|ENV|PROMPT_COMMAND|IFS|PS4|SHELLOPTS|BASHOPTS|GCONV_PATH"
    r"|PYTHONPATH|PYTHONSTARTUP|PERL5LIB|PERL5OPT|RUBYOPT|NODE_OPTIONS|GIT_SSH_COMMAND"
    r"|GIT_EXEC_PATH|EDITOR|VISUAL|PAGER|BROWSER|PATH)$"
)

_SHELL_PATH = re.compile(r"/bin/(?:ba|da|z|k|mk|c|tc|fi|a|rba)?sh\b")
_SHELL_WORD = re.compile(r"(?:^|[\s;|&'\"(=`!,\[{])(?:ba|da|z|k|c|tc|a)?sh(?=$|[\s;|&'\")<>\]},])")
_ESCAPE = re.compile(
    r"(?:^|[\s'\"(])(?::!|:sh(?:ell)?\b|:terminal\b|![a-z/]|@exec\b)|\bexec\s*(?:\(|/|\\?!)|\bsystem\s*\(|\bpopen\s*\("
    r"|\$\(shell\b|\besyscmd\b|\bsyscmd\b|\bsystem\s+['\"/]"
    r"|\bos\.exec|\bos\.system|\bos\.popen|\bsubprocess\b|\bpty\.spawn|\bio\.popen|\bspawn\s*\(|\bruncmd\b"
    r"|shell-escape|\bwrite18\b|runtime\.getruntime|\bprocessbuilder\b|child_process|\bshell_exec\b"
    r"|\bsyscall\.exec|\bexecve?\s*\(|\bzmodload\b"
    r"|\bpassthru\s*\(|\bproc_open\b|\bkernel\.(?:exec|system|spawn)|`[^`]+`|\bsh -c\b|\bsyscmd\b|\besyscmd\b",
    re.IGNORECASE,
)
_SOCKET_CODE = re.compile(
    r"socket|tcpsocket|/inet/tcp|net\.connect|fsockopen|io::socket|socket\.socket|new socket|tcpclient"
    r"|\bnet\.socket|websocket",
    re.IGNORECASE,
)
_REVERSE_CODE = re.compile(
    r"\bdup2?\b|connect\s*\(|pty\.spawn|\bspawn\b|exec|/bin/(?:ba)?sh|\bsh\b|cmd\.exe"
    r"|getinputstream|\bpipe\b|redirect",
    re.IGNORECASE,
)
_WRITE_CODE = re.compile(
    r"open\s*\([^)]*['\"][wa]\+?b?['\"]|\.write\s*\(|writefile|file_put_contents|out-file"
    r"|['\"]w\+?b?['\"]\s*\)|createwritestream|\\openout|\\write\d*\{|\$\(file\s*>|/save\s"
    r"|\bcp\s*\(|copyfile|file\.copy|fputs|dump value|copy_stream|\.output\s+/|/w\s+/"
    r"|\bfile\s*\{\s*['\"]/|dbfilename|config set dir"
    r"|set-content|io\.open\s*\([^)]*['\"][wa]|fopen\s*\([^)]*['\"][wa]|print\s*>|>\s*\"/",
    re.IGNORECASE,
)
_NET_CODE = re.compile(
    r"urllib|requests\.|http\.client|urlopen|httpget|fetch\s*\(|wget|curl|net::http|https?://"
    r"|require\s*\(\s*['\"](?:https?|net|dgram)['\"]|\bdownload\s*\(|socket\.|tcpsocket|open-uri"
    r"|ztcp|httpd\b"
    r"|lwp::|file_get_contents\s*\(\s*['\"]https?|invoke-webrequest|downloadstring|\bhttp\.get",
    re.IGNORECASE,
)
_LIB_CODE = re.compile(
    r"ctypes|cdll|loadlibrary|dlopen|ffi\.|\.so\b|require\s*\(\s*['\"]/|load\s*\(\s*['\"]/", re.IGNORECASE
)
_DECODE_CODE = re.compile(
    r"b64decode|base64|frombase64|atob\s*\(|unhexlify|decode\s*\(\s*['\"]hex", re.IGNORECASE
)
_HEX_ESCAPES = re.compile(r"\\x[0-9a-fA-F]{2}|\\[0-7]{3}|\\u[0-9a-fA-F]{4}")

_CREDENTIALS = re.compile(
    r"(?:^|/|~)\.ssh(?:/|$)|\bid_(?:rsa|dsa|ecdsa|ed25519)\b|/etc/(?:g?shadow|sudoers|master\.passwd)\b"
    r"|/proc/(?:\d+|self|\*|\$\w+)/environ|\.aws/credentials|\.netrc\b|\.git-credentials|\.docker/config\.json"
    r"|\.kube/config|\.gnupg\b|\.(?:bash|zsh)_history\b|\.pgpass\b|\.my\.cnf\b"
    r"|(?:^|/)\.env(?:\.(?!example|sample|template|dist|defaults?\b)\w+)?$"
    r"|\.config/gh/hosts|\.npmrc\b|\.pypirc\b|/etc/ssl/private|keychain|\.password-store"
)
_PERSISTENCE = re.compile(
    r"(?:^|/|~)\.(?:bashrc|bash_profile|bash_login|profile|zshrc|zprofile|zshenv|zlogin|kshrc|cshrc|tcshrc"
    r"|bash_logout|xinitrc|xprofile|inputrc)$|/etc/(?:profile|bash\.bashrc|zsh/|environment|rc\.local"
    r"|crontab|cron\.|anacrontab|init\.d/|systemd/|ld\.so\.preload|ld\.so\.conf|sudoers|passwd$|group$"
    r"|update-motd\.d|udev/rules\.d|modules-load\.d|pam\.d/|security/|ssh/sshd_config|apt/apt\.conf\.d)"
    r"|/var/spool/cron|authorized_keys2?$|\.config/(?:autostart|systemd)/|/lib/systemd/|/usr/lib/systemd/"
    r"|\.ssh/(?:config|rc|environment)$|/library/launch(?:agents|daemons)|\.local/share/systemd"
)
_DISK_DEVICE = re.compile(
    r"^/dev/(?:sd[a-z]|hd[a-z]|vd[a-z]|xvd[a-z]|nvme\d|mmcblk\d|disk\d|mapper/|md\d|dm-"
    r"|loop\d|mem$|kmem$|port$|root$)"
)
_NET_DEVICE = re.compile(r"^/dev/(?:tcp|udp)/")
_SAFE_WRITE = re.compile(
    r"^/(?:tmp|var/tmp|dev/null|dev/stdout|dev/stderr|dev/fd/\d+|proc/self/fd/\d+|dev/tty)"
    r"(?:/|$)"
)
_ROOTISH = re.compile(
    r"^(?:/+\.?|/\*|~/?|~/\*|\$home/?|\$\{home\}/?|\*|\.\./?|\.\./\*|/(?:etc|usr|var|home|boot|bin|"
    r"sbin|lib|lib64|opt|root|srv|sys|proc|dev|mnt|media|run|snap)/?\*?)$",
    re.IGNORECASE,
)
_OUTPUT_OPTS = frozenset(
    [
        "-o",
        "--output",
        "--out",
        "-O",
        "--output-document",
        "-w",
        "--write",
        "--log-file",
        "--logfile",
        "--log",
        "--outfile",
        "--output-file",
        "--save",
        "--dump",
        "-t",
        "--target",
        "--target-directory",
    ]
)
_OUTPUT_OPT_RE = re.compile(
    r"^(?:--?(?:o|out|output|output-document|outfile|output-file|log-file|logfile|log|save"
    r"|dump|write)=(.+)|of=(.+)|-o([/~].*))$"
)
_OUTPUT_OPT_NAME = re.compile(
    r"^--?(?:o[a-z]?|w|t|(?:[a-z][\w-]*)?(?:out|save|dump|write|log|file|filename|dest|export"
    r"|xml|report|json|html|target|directory)[\w-]*)$",
    re.IGNORECASE,
)
_ENV_HOOK_NAME = re.compile(
    r"(?:PAGER|EDITOR|OPEN|BIN|HOOK|CMD|COMMAND|SHELL|EXEC|PROG|VIEWER|BROWSER|SCRIPT)", re.IGNORECASE
)
_SYSTEM_PREFIXES = ("/usr/", "/bin/", "/sbin/", "/opt/", "/snap/", "/nix/", "/lib/", "/usr/local/")
_LOCAL_PACKAGE = re.compile(
    r"\.(?:deb|rpm|snap|apk|pkg|msi|txz|tgz)$|^--(?:dangerous|devmode|force-all|nodeps"
    r"|unsafe-perm|allow-unauthenticated)$|^localinstall$|^https?://.*\.(?:deb|rpm)$"
)
SERVERS = frozenset(
    [
        "httpd",
        "smbserver.py",
        "smbserver",
        "atftpd",
        "in.tftpd",
        "tftpd",
        "vsftpd",
        "ftpd",
        "sshd",
        "dropbear",
        "miniserve",
        "http-server",
        "simplehttpserver",
    ]
)
_READERS = frozenset(
    [
        "cat",
        "diff",
        "cmp",
        "grep",
        "egrep",
        "fgrep",
        "rg",
        "head",
        "tail",
        "less",
        "more",
        "wc",
        "ls",
        "stat",
        "file",
        "du",
        "df",
        "find",
        "sha256sum",
        "sha1sum",
        "md5sum",
        "b2sum",
        "cksum",
        "diff3",
        "sdiff",
        "comm",
        "jq",
        "yq",
        "bat",
        "tree",
        "realpath",
        "readlink",
        "basename",
        "dirname",
        "test",
        "[",
        "echo",
        "printf",
        "git",
        "python",
        "node",
        "make",
        "pytest",
        "mypy",
        "ruff",
        "black",
        "awk",
        "sed",
        "sort",
        "uniq",
        "cut",
        "tr",
        "column",
        "od",
        "hexdump",
        "strings",
        "nm",
        "objdump",
        "readelf",
        "ldd",
        "docker",
        "podman",
        "kubectl",
        "ssh",
        "ping",
        "dig",
        "host",
        "nslookup",
        "id",
        "groups",
        "getent",
        "lsof",
        "ps",
        "pgrep",
        "which",
        "type",
        "man",
    ]
)
_SUBCOMMAND_SHELL = frozenset(["shell", "sh", "terminal", "repl", "tunnel"])
_PACKAGE_MANAGERS = frozenset(
    [
        "dpkg",
        "apt",
        "apt-get",
        "dnf",
        "yum",
        "rpm",
        "snap",
        "apk",
        "zypper",
        "pacman",
        "installer",
        "gdebi",
        "pkg",
        "opkg",
    ]
)
_COPY_LIKE = frozenset(
    [
        "cp",
        "mv",
        "install",
        "ln",
        "rsync",
        "dd",
        "tee",
        "truncate",
        "touch",
        "sed",
        "patch",
        "tar",
        "unzip",
        "cpio",
        "ar",
        "7z",
        "zip",
        "gzip",
        "bzip2",
        "xz",
        "split",
        "csplit",
    ]
)
