# What can be checked about the Nix path without nixpkgs (this build box cannot fetch it):
#   nix-instantiate --eval --strict image/nix/offline-checks.nix
# Evaluates pyproject.toml with builtins.fromTOML, checks that the wheel hashes pinned in flake.nix are the
# ones in requirements.lock, and that the systemd unit carries the directives the device relies on.
let
  root = ../..;
  pyproject = builtins.fromTOML (builtins.readFile (root + "/pyproject.toml"));
  lock = builtins.readFile (root + "/requirements.lock");
  flake = builtins.readFile (root + "/flake.nix");
  unit = builtins.readFile (root + "/image/systemd/appliance.service");
  contains = needle: hay: builtins.length (builtins.split needle hay) > 1;
  hashes = [
    "3f484c4bb8796cde7a87ca351e6116f09653edac0eb3c6d238566359dd28b117"
    "e76c4cfb20b076552406782b7f8c2a3946835993df0a44df006de54b7030c7dc"
  ];
  directives = [
    "Type=notify" "Restart=on-failure" "WatchdogSec=" "MemoryMax=" "CPUQuota=" "ProtectSystem=strict"
    "NoNewPrivileges=yes" "User=appliance"
  ];
  checks = {
    version = pyproject.project.version;
    hashesInFlake = builtins.all (h: contains h flake) hashes;
    hashesInLock = builtins.all (h: contains h lock) hashes;
    unitDirectives = builtins.all (d: contains d unit) directives;
    flakeHasNoExtraInputs = !(contains "uv2nix" flake);
  };
  failed = builtins.filter (n: checks.${n} == false) (builtins.attrNames checks);
in
if failed == [ ] then checks else throw "offline checks failed: ${builtins.concatStringsSep ", " failed}"
