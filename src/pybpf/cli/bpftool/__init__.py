"""bpftool's command line, on pybpf's persistent kernel model.

``pybpf [OPTIONS] OBJECT COMMAND ...`` accepts bpftool's grammar: objects
``prog``, ``map``, ``btf``, ``net``, ``feature``; the global options
``-j/--json``, ``-p/--pretty``, ``-d/--debug``; unique prefixes of keywords
(``p l`` = ``prog list``) as bpftool allows.  Each object module defines
``COMMANDS`` (name -> function(ctx, args) -> exit status); :func:`dispatch`
runs one inside a :func:`pybpf.kernel.state.session`.
"""
