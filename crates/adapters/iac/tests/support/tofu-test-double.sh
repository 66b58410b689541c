#!/bin/sh
# tofu-test-double: a TEST DOUBLE of the OpenTofu/Terraform CLI, for sluice's tests only.
#
# It speaks the part of the CLI contract sluice uses — `version -json`, `init`, `plan -out=FILE
# -detailed-exitcode`, `show -json FILE` — and serves real plan JSON from
# ../shared/corpus/tf-plans instead of planning anything. Tests install it on a temporary PATH
# as `tofu` (or `terraform`); installed as `terragrunt` it also checks that the caller passed
# the engine in TG_TF_PATH, as terragrunt needs.
#
# Per stack, a file `tofu-double.conf` in the working directory steers it (key=value lines):
#   plan_json=/abs/path.json   the plan JSON `show -json` prints
#   exit=0|2                   plan's detailed exit code on success (default 2)
#   fail=init-provider|module|auth|state-lock|plan|show|hang|init-auth
#                              simulate that failure class (hang: never finish, exit 130 on INT)
#   require=relative/path      plan fails with "Module not installed" unless this file exists
#   stderr=TEXT                extra line printed on stderr before a failure
#
# Every invocation is appended to $TEST_DOUBLE_LOG as one line: "<event> <pid> <cwd> <args>".

log() {
    if [ -n "$TEST_DOUBLE_LOG" ]; then
        printf '%s %s %s %s\n' "$1" "$$" "$(pwd)" "$ARGS" >> "$TEST_DOUBLE_LOG"
    fi
}

conf() {
    [ -f tofu-double.conf ] || return 0
    sed -n "s/^$1=//p" tofu-double.conf | head -n 1
}

extra_stderr() {
    e=$(conf stderr)
    [ -n "$e" ] && printf '%s\n' "$e" >&2
    return 0
}

has_arg() {
    for a in $ARGS; do
        [ "$a" = "$1" ] && return 0
    done
    return 1
}

ARGS="$*"
cmd="$1"
[ $# -gt 0 ] && shift

case "$cmd" in
version)
    log version
    if [ "$1" = "-json" ]; then
        printf '{"terraform_version":"1.8.5-test-double","platform":"linux_amd64","provider_selections":{},"terraform_outdated":false}\n'
    else
        echo "OpenTofu v1.8.5-test-double"
    fi
    exit 0
    ;;
--version)
    # terragrunt's flag
    echo "terragrunt version v0.67.16-test-double"
    exit 0
    ;;
init)
    log init-start
    if [ "$(basename "$0")" = terragrunt ] && [ -z "$TG_TF_PATH" ]; then
        echo "Error: TG_TF_PATH not set by the caller" >&2
        exit 1
    fi
    has_arg -input=false || { echo "Error: init must run with -input=false" >&2; exit 1; }
    # Long enough that two unserialised inits would overlap in the log.
    sleep 0.1
    case "$(conf fail)" in
    init-provider)
        extra_stderr
        printf '%s\n' "Error: Failed to query available provider packages" \
            "" "Could not retrieve the list of available versions for provider hashicorp/aws:" \
            "could not connect to registry.terraform.io" >&2
        log init-end
        exit 1 ;;
    module)
        extra_stderr
        printf '%s\n' "Error: Failed to download module" "" \
            "Could not download module \"vpc\" (main.tf:1) source code from" \
            "\"git::https://example.invalid/vpc.git?ref=v1.2.3\"" >&2
        log init-end
        exit 1 ;;
    init-auth)
        extra_stderr
        printf '%s\n' "Error: error configuring S3 Backend: no valid credential sources for S3 Backend found." >&2
        log init-end
        exit 1 ;;
    esac
    mkdir -p .terraform
    echo "OpenTofu has been successfully initialized!"
    log init-end
    exit 0
    ;;
plan)
    log plan
    [ -d .terraform ] || { echo "Error: Backend initialization required, please run \"tofu init\"" >&2; exit 1; }
    has_arg -input=false || { echo "Error: plan must run with -input=false" >&2; exit 1; }
    has_arg -detailed-exitcode || { echo "Error: plan must run with -detailed-exitcode" >&2; exit 1; }
    out=""
    for a in $ARGS; do
        case "$a" in -out=*) out="${a#-out=}" ;; esac
    done
    [ -n "$out" ] || { echo "Error: plan must run with -out=FILE" >&2; exit 1; }
    req=$(conf require)
    if [ -n "$req" ] && [ ! -f "$req" ]; then
        printf '%s\n' "Error: Module not installed" "" "  on main.tf line 1:" \
            "This module's local source \"$req\" is missing." >&2
        exit 1
    fi
    case "$(conf fail)" in
    auth)
        extra_stderr
        printf '%s\n' "Error: No valid credential sources found" "" \
            "  with provider[\"registry.terraform.io/hashicorp/aws\"]," \
            "Please see https://registry.terraform.io/providers/hashicorp/aws for more information." >&2
        exit 1 ;;
    state-lock)
        extra_stderr
        printf '%s\n' "Error: Error acquiring the state lock" "" \
            "Error message: ConditionalCheckFailedException: The conditional request failed" \
            "Lock Info:" "  ID:        9db590f1-b6fe-c5f2-2678-8804f089deba" \
            "  Who:       ci@runner-7" >&2
        exit 1 ;;
    plan)
        extra_stderr
        printf '%s\n' "Error: Unsupported argument" "" "  on main.tf line 3, in resource \"aws_db_instance\" \"db\":" \
            "   3:   pasword = var.db_password" "" "An argument named \"pasword\" is not expected here." >&2
        exit 1 ;;
    hang)
        trap 'echo "Interrupt received. Gracefully shutting down..." >&2; exit 130' INT
        while :; do sleep 0.05; done ;;
    esac
    json=$(conf plan_json)
    [ -f "$json" ] || { echo "Error: test double: plan_json $json not found" >&2; exit 1; }
    printf 'TFPLAN-TEST-DOUBLE\n%s\n' "$json" > "$out"
    exit "$(conf exit | grep . || echo 2)"
    ;;
show)
    log show
    has_arg -json || { echo "Error: show must run with -json" >&2; exit 1; }
    file=""
    for a in $ARGS; do
        case "$a" in -*|show) ;; *) file="$a" ;; esac
    done
    if [ "$(conf fail)" = "show" ]; then
        echo "Error: Failed to read the given file as a state or plan file" >&2
        exit 1
    fi
    [ -f "$file" ] || { echo "Error: no plan file $file" >&2; exit 1; }
    json=$(sed -n 2p "$file")
    cat "$json"
    exit 0
    ;;
*)
    echo "tofu-test-double: unsupported command: $cmd" >&2
    exit 1
    ;;
esac
