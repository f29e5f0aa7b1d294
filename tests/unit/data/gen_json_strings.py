#!/usr/bin/python3
"""Writes json_strings.inc for test_json.c: DRF's JSON rendering of strings.

Run once: python3 gen_json_strings.py > json_strings.inc (Python 3.11). DRF renders with
json.dumps(ensure_ascii=False, separators=(",", ":")) and then escapes U+2028/U+2029.
"""
import json
def drf(s):
    return json.dumps(s, ensure_ascii=False, separators=(",",":")).replace("\u2028","\\u2028").replace("\u2029","\\u2029")
def lit(b):
    out='"'
    for i,c in enumerate(b):
        if 0x20<=c<0x7f and c not in (0x22,0x5c,0x3f):
            out+=chr(c)
        else:
            out+='\\x%02x""' % c
    return out+'"'
strs=["", "plain text", "a\"b", "back\\slash", "tab\tnl\ncr\rbs\bff\f", "\x00", "\x0b\x1f\x7f", "a/b</script>",
"\u20ac", "\U0001F600", "\u2028", "\u2029", "x\u2028y\u2029z", "\u2027\u202a\u2020", "\xe9t\xe9", "\ufeff", "\U0010FFFF",
"mixed \"\\\u2028\n\U0001F4A9\x01 end"]
print("/* DRF's rendering of every ASCII character on its own (json.dumps, ensure_ascii=False). */")
print("static const char *const ascii_want[128] = {")
for c in range(128):
    b=drf(chr(c)).encode()
    print("    %s," % lit(b))
print("};")
print("/* Strings (UTF-8) and DRF's rendering of them, from Python 3.11. */")
print("static const struct { const char *in; size_t len; const char *want; } strings_want[] = {")
for s in strs:
    print("    {%s, %d, %s}," % (lit(s.encode()), len(s.encode()), lit(drf(s).encode())))
print("};")
