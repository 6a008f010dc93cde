# A second, independent build path (see image/README.md): the Python application from nixpkgs' own Python
# packages, and an OCI image with dockerTools. Not bit-compatible with the PyInstaller bundle (different
# interpreter and library builds); compare test results between the two paths, not hashes.
#
#   nix build .#appliance       the application (bin/appliance)
#   nix build .#image           an OCI image tarball (docker-archive; `podman load < result`)
#   nix flake check             runs `appliance version`, `doctor --json` and the sans-IO artifact tests
#
# Offline on the build box only the input-free flake in image/nix/ can be evaluated; this one needs
# nixpkgs (network or a pre-seeded store). Versions come from nixpkgs, not from requirements.lock, except
# tree-sitter-bash, which is pinned to the same wheel hash as the lock.
{
  description = "appliance: personal AI-assistant gateway for small ARM boards";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});
      pyproject = builtins.fromTOML (builtins.readFile ./pyproject.toml);
      version = pyproject.project.version;

      # tree-sitter-bash is not in nixpkgs' python set; use the manylinux wheel from requirements.lock
      treeSitterBashWheel = {
        x86_64-linux = {
          platform = "manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64";
          sha256 = "3f484c4bb8796cde7a87ca351e6116f09653edac0eb3c6d238566359dd28b117";
        };
        aarch64-linux = {
          platform = "manylinux2014_aarch64.manylinux_2_17_aarch64.manylinux_2_28_aarch64";
          sha256 = "e76c4cfb20b076552406782b7f8c2a3946835993df0a44df006de54b7030c7dc";
        };
      };

      pythonFor = system: pkgs:
        let
          python = pkgs.python311.override {
            self = python;
            packageOverrides = pyself: pysuper: {
              tree-sitter-bash = pyself.buildPythonPackage rec {
                pname = "tree_sitter_bash";
                version = "0.25.1";
                format = "wheel";
                src = pkgs.fetchurl {
                  url = "https://files.pythonhosted.org/packages/cp310/t/tree_sitter_bash/${pname}-${version}-cp310-abi3-${treeSitterBashWheel.${system}.platform}.whl";
                  sha256 = treeSitterBashWheel.${system}.sha256;
                };
                nativeBuildInputs = [ pkgs.autoPatchelfHook ];
                buildInputs = [ pkgs.stdenv.cc.cc.lib ];
              };
            };
          };
        in
        python;

      appFor = system: pkgs:
        let python = pythonFor system pkgs;
        in python.pkgs.buildPythonApplication {
          pname = "appliance";
          inherit version;
          pyproject = true;
          src = nixpkgs.lib.cleanSource ./.;
          build-system = [ python.pkgs.setuptools python.pkgs.wheel ];
          dependencies = with python.pkgs; [
            trio
            trio-websocket
            attrs
            cattrs
            apsw
            httpx
            zstandard
            podman
            cryptography
            croniter
            tree-sitter
            tree-sitter-bash
          ];
          # nixpkgs' versions may differ from requirements.lock: pyproject's lower bounds still apply
          pythonRelaxDeps = true;
          nativeCheckInputs = with python.pkgs; [ pytest pytest-trio hypothesis ];
          checkPhase = ''
            runHook preCheck
            pytest -q -p no:cacheprovider -m "not slow and not integration and not podman and not openclaw" \
              tests/artifact tests/config
            runHook postCheck
          '';
          pythonImportsCheck = [ "appliance.cli.main" "appliance.artifact.minisign" ];
          meta.mainProgram = "appliance";
        };
    in
    {
      packages = forAll (system: pkgs:
        let app = appFor system pkgs;
        in {
          appliance = app;
          default = app;
          image = pkgs.dockerTools.buildLayeredImage {
            name = "localhost/appliance";
            tag = version;
            # `created` left at dockerTools' fixed default (1970-01-01T00:00:01Z): same inputs, same image
            contents = [ app pkgs.cacert ];
            extraCommands = ''
              mkdir -p tmp var/lib/appliance etc
              chmod 1777 tmp
              echo 'appliance:x:10001:10001::/var/lib/appliance:/bin/false' > etc/passwd
              echo 'appliance:x:10001:' > etc/group
            '';
            fakeRootCommands = ''
              chown 10001:10001 var/lib/appliance
              chmod 0700 var/lib/appliance
            '';
            config = {
              User = "10001:10001";
              Entrypoint = [ "${app}/bin/appliance" ];
              Cmd = [ "serve" "--bind" "lan" ];
              Env = [ "HOME=/var/lib/appliance" "APPLIANCE_DATA_DIR=/var/lib/appliance" "SSL_CERT_FILE=${pkgs.cacert}/etc/ssl/certs/ca-bundle.crt" ];
              ExposedPorts."18789/tcp" = { };
            };
          };
        });

      checks = forAll (system: pkgs:
        let app = self.packages.${system}.appliance;
        in {
          smoke = pkgs.runCommand "appliance-smoke" { } ''
            export HOME=$TMPDIR APPLIANCE_DATA_DIR=$TMPDIR/data
            ${app}/bin/appliance version --json > $out
            ${app}/bin/appliance doctor --json >> $out
          '';
        });

      devShells = forAll (system: pkgs: {
        default = pkgs.mkShell {
          packages = [ (pythonFor system pkgs) pkgs.minisign pkgs.podman pkgs.zstd ];
        };
      });
    };
}
