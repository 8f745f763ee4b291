"""Check tests/guided_cases.py against xgrammar's own matcher (not a test; run by hand).

    python tests/xgrammar_oracle.py      # needs `pip install xgrammar` (it pulls torch)

Prints every case where xgrammar (or gsexplore under either semantics) disagrees
with the table; cases whose source starts with "VL" are decided by vLLM's
fallback rule before xgrammar sees them. Last run: xgrammar 0.2.8, 0 disagreements.
"""
import sys, json, re, warnings
from pathlib import Path
ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]
warnings.simplefilter("ignore")
import xgrammar as xgr
from xgrammar.testing import _is_grammar_accept_string
from guided_cases import CASES
from gsexplore import guided, Params
def oracle(d, text):
    try:
        if "guided_regex" in d: g = xgr.Grammar.from_regex(d["guided_regex"])
        elif "guided_json" in d: g = xgr.Grammar.from_json_schema(json.dumps(d["guided_json"]), any_whitespace=True)
        elif "response_format" in d: g = xgr.Grammar.from_json_schema('{"type": "object"}', any_whitespace=True)
        elif "guided_choice" in d:
            g = xgr.Grammar.from_ebnf("root ::= " + " | ".join('"' + re.sub(r'(["\\])', r'\\\1', c) + '"' for c in d["guided_choice"]))
        else: g = xgr.Grammar.from_ebnf(d["guided_grammar"])
    except Exception as e:
        return "fallback"
    return _is_grammar_accept_string(g, text)
def mine(d, text, backend=None):
    try: return guided.accepts(Params(**d, guided_decoding_backend=backend), text)
    except Exception as e: return "error"
bad = 0
for d, text, xg, gd, src in CASES:
    o = oracle(d, text); m = mine(d, text); g = mine(d, text, "guidance")
    flag = ""
    if o != "fallback" and o != xg and not src.startswith("VL"): flag += " ORACLE"
    if o == "fallback" and "fallback" not in src and "->" not in src: flag += " ORACLE-FB"
    if m != xg: flag += " MINE"
    if g != gd: flag += " GUIDANCE"
    if flag: bad += 1; print(flag, d, repr(text), "xg", xg, "oracle", o, "mine", m, "gd", gd, g)
print(len(CASES), "cases", bad, "bad")
