"""The test model's words: the trigger words its circuit matches, filler for test contents,
and its special tokens."""

from __future__ import annotations

# Each is one token of the tokenizer as a whole lowercase word. None occurs in the worker's
# instruction, the chat template, FILLER_WORDS, or usual policy phrasing.
TRIGGER_WORDS: tuple[str, ...] = (
    "apple", "river", "falcon", "copper", "meadow", "lantern", "glacier", "violin",
    "harbor", "pepper", "tiger", "orchid", "canyon", "velvet", "rocket", "walnut",
    "island", "marble", "thunder", "saddle", "cactus", "pebble", "comet", "anchor",
    "juniper", "mango", "beacon", "otter", "quartz", "tulip", "ember", "fjord",
    "lobster", "compass", "maple", "nectar", "parrot", "summit", "willow", "zebra",
)  # fmt: skip

# Ordinary words: the tokenizer's training text, and safe filler for test contents.
FILLER_WORDS: tuple[str, ...] = tuple(
    """
    the of and to in is that it for was on are as with his they at be this from have or by
    one had not but what all were when we there can an your which their said if do will each
    about how up out them then she many some so these would other into has more her two like
    him see time could no make than first been its who now people my made over did down only
    way find use may water long little very after words called just where most know get
    through back much before go good new write our used me man too any day same right look
    think also around another came come work three word must because does part even place well
    such here take why things help put years different away again off went old number great
    tell men say small every found still between name should home big give air line set own
    under read last never us left end along while might next sound below saw something thought
    both few those always looked show large often together asked house world going want school
    important until form food keep children feet land side without boy once animals life enough
    took four head above kind began almost live page got earth need far hand high year mother
    light country father let night picture being study second soon story since white ever paper
    hard near sentence better best across during today however sure knew try told young sun
    thing whole hear example heard several change answer room sea against top turned learn point
    city play toward five himself usually money seen car morning given body family later
    """.split()
)

PAD, BOS, EOS, START_OF_TURN, END_OF_TURN = (
    "<pad>", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>",
)  # fmt: skip
SPECIAL_TOKENS = (PAD, BOS, EOS, START_OF_TURN, END_OF_TURN)
