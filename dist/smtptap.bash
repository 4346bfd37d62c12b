# bash completion for smtptap(1): flags, their fixed values, files and directories.
# Self-contained (works without the bash-completion package's helpers).

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
    case $prev in
    -c | --config | --upstream-ca | --keylog)
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
        mapfile -t COMPREPLY < <(compgen -W 'sink transparent tls: starttls: plain:' -- "$cur")
        [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *: ]] && compopt -o nospace 2>/dev/null
        return
        ;;
    --client-starttls)
        mapfile -t COMPREPLY < <(compgen -W 'offer strip passthrough' -- "$cur")
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
        --only | --session)
        return # a value of the user's own
        ;;
    esac
    if [[ $cur == -* || -z $cur ]]; then
        mapfile -t COMPREPLY < <(compgen -W '--listen --upstream --config --capture-dir
            --format --eml-raw --client-starttls --max-sessions --idle-timeout
            --connect-timeout --quiet --verbose --color= --version --help --decode-auth
            --redact --fault --seed --insecure --upstream-ca --ca-dir --print-ca --keylog
            --summary --only --session' \
            -- "$cur")
        [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *= ]] && compopt -o nospace 2>/dev/null
    fi
}
complete -F _smtptap smtptap
