# bash completion for smtptap(1): flags, their fixed values, files and directories.
# Self-contained (works without the bash-completion package's helpers).

# smtptap check-client [--json] [--timeout DURATION] [--ca-dir DIR] -- COMMAND [ARG...]
_smtptap_check_client()
{
    local i
    for ((i = 2; i < COMP_CWORD; i++)); do
        [[ ${COMP_WORDS[i]} == -- ]] || continue
        compopt -o filenames 2>/dev/null
        if ((i + 1 == COMP_CWORD)); then
            mapfile -t COMPREPLY < <(compgen -c -- "$cur") # the client command
        else
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        fi
        return
    done
    case $prev in
    --ca-dir)
        compopt -o filenames 2>/dev/null
        mapfile -t COMPREPLY < <(compgen -d -- "$cur")
        ;;
    --timeout) ;;
    *) mapfile -t COMPREPLY < <(compgen -W '--json --timeout --ca-dir --help --' -- "$cur") ;;
    esac
}

_smtptap()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    COMPREPLY=()
    # '=' splits words for readline: "--color=al" arrives as "--color" "=" "al".
    if [[ $cur == = ]]; then
        cur=
    elif [[ $prev == = && $COMP_CWORD -ge 2 ]]; then
        prev=${COMP_WORDS[COMP_CWORD - 2]}
    fi
    [[ ${COMP_WORDS[1]} == check-client && $COMP_CWORD -ge 2 ]] && {
        _smtptap_check_client
        return
    }
    [[ ${COMP_WORDS[1]} == @(diff|replay-client) && $COMP_CWORD -ge 2 ]] && {
        [[ $prev == @(--time-threshold|--to|--timeout) ]] && return
        compopt -o filenames 2>/dev/null
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        local opts='--time-threshold --help'
        [[ ${COMP_WORDS[1]} == replay-client ]] && opts='--to --insecure --timeout --help'
        [[ $cur == -* ]] && mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
        return
    }
    [[ $COMP_CWORD -eq 1 && $cur != -* ]] && {
        mapfile -t COMPREPLY < <(compgen -W 'check-client diff replay-client' -- "$cur")
        return
    }
    case $prev in
    -c | --config | --upstream-ca | --keylog | --control-token-file)
        compopt -o filenames 2>/dev/null
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        return
        ;;
    -d | --capture-dir | --ca-dir)
        compopt -o filenames 2>/dev/null
        mapfile -t COMPREPLY < <(compgen -d -- "$cur")
        [[ $prev != --ca-dir && - == "$cur"* ]] && COMPREPLY+=(-)
        return
        ;;
    -u | --upstream)
        mapfile -t COMPREPLY < <(compgen -W 'sink transparent replay: tls: starttls: plain:' -- "$cur")
        [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *: ]] && compopt -o nospace 2>/dev/null
        return
        ;;
    --client-starttls)
        mapfile -t COMPREPLY < <(compgen -W 'offer strip passthrough' -- "$cur")
        return
        ;;
    --client-cert)
        mapfile -t COMPREPLY < <(compgen -W 'good self-signed untrusted-ca expired not-yet-valid
            wrong-host weak-key sha1' -- "$cur")
        return
        ;;
    --color | --colour)
        mapfile -t COMPREPLY < <(compgen -W 'auto always never' -- "$cur")
        return
        ;;
    --format)
        # a comma-separated list: complete its last item with the formats not yet given
        local done=${cur%"${cur##*,}"} f left=()
        for f in text jsonl pcap eml; do
            [[ ,$done == *,$f,* ]] || left+=("$f")
        done
        mapfile -t COMPREPLY < <(compgen -P "$done" -W "${left[*]}" -- "${cur##*,}")
        compopt -o nospace 2>/dev/null
        return
        ;;
    -l | --listen | --fault | --seed | --max-sessions | --idle-timeout | --connect-timeout | \
        --only | --session | --replay-speed | --control | --control-token | --control-recent)
        return # a value of the user's own
        ;;
    esac
    if [[ $cur == -* || -z $cur ]]; then
        mapfile -t COMPREPLY < <(compgen -W '--listen --upstream --config --capture-dir
            --format --eml-raw --client-starttls --max-sessions --idle-timeout
            --connect-timeout --quiet --verbose --color= --version --help --decode-auth
            --redact --fault --seed --insecure --upstream-ca --ca-dir --print-ca --keylog
            --client-cert --summary --only --session --replay-speed --replay-strict
            --control --control-token --control-token-file --control-recent' \
            -- "$cur")
        [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *= ]] && compopt -o nospace 2>/dev/null
    fi
}
complete -F _smtptap smtptap
