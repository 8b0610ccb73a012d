"""The object features that read the instruction's frozen encoder states (`instruction_words`, `instruction_sides`,
`instruction_corners`, `instruction_order`, `instruction_support`; see `agent.model.features` for what each adds).
Registered on import; `agent.model.features` imports this module at its end.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from agent.model.features import (
    _COLOR_COL,
    _KINDS,
    _SIZE_COL,
    SIZE_SPLIT,
    FeatureSetup,
    ObjectContext,
    ObjectFeature,
    _zero_map,
    kind_of,
    register_object_feature,
    stacks,
)
from agent.model.tokens import IGNORE_TARGET
from envs.catalogue import COLOR_NAMES, SIZE_NAMES
from envs.tasks.push.geometry import CORNERS, location_weights, nearest_weights

INSTRUCTION_MATCH = 0.65  # cosine similarity at which a word counts as said (gate 0.5; learnt from there)


@register_object_feature("instruction_words")
class InstructionWords(ObjectFeature):
    """Where the instruction names the object, and the words around it there.

    For each of the object's words w (colour; shape, or "zone" for a zone row; size for objects), its
    query q_w is the frozen instruction encoder's state of the word said alone (the mean over its word
    pieces). Over the word-piece states s_t of the example's instruction ([CLS] and [SEP] included): attention a_t = softmax_t(k cos(q_w,
    s_t)) and a gate g_w = sigmoid(c (max_t cos(q_w, s_t) - m)), k, c, m learnt from 20, 20 and
    `INSTRUCTION_MATCH` (all-MiniLM-L6-v2: a word said in the sentence scores 0.7-0.9, any other 0.6 or less).
    Output (N, D): sum_w g_w (V sum_t a_t s_t + e_w), V (W -> D) and e_w learnt from zero. A block named by
    its shape alone ("the pentagon") so carries, in its own token, the encoder's state of the word that named
    it in context (which block of the sentence it is), and the plan copies its colour from there. Examples
    without an instruction get nothing.
    """

    reads_instruction = True

    def __init__(self, setup: FeatureSetup) -> None:
        super().__init__(setup)
        self.value = _instruction_map(setup, "instruction_words")  # V
        with torch.no_grad():
            table = torch.stack([setup.text.states(w)[1:-1].mean(0) for w in [*COLOR_NAMES, *_KINDS, *SIZE_NAMES]])
        self.register_buffer("queries", nn.functional.normalize(table, dim=-1), persistent=False)  # (words, W)
        self.said = nn.Parameter(torch.zeros(3, setup.width))  # e_w: colour, kind, size
        self.sharpness = nn.Parameter(torch.tensor(20.0))  # k
        self.slope = nn.Parameter(torch.tensor(20.0))  # c
        self.match = nn.Parameter(torch.tensor(INSTRUCTION_MATCH))  # m

    def mentions(self, ctx: ObjectContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """((N, 3, L) attention a, (N, 3) gate g, (N, L, W) states s) of each row's colour, kind and size word
        over its own example's instruction (L: the batch's longest; padding gets no attention); None when the batch
        has no instruction."""
        padded = padded_instruction(ctx)
        if padded is None:
            return None
        states, valid, _ = padded
        s = states[ctx.scene].to(self.value.weight.dtype)  # (N, L, W): each row's own instruction
        own = valid[ctx.scene][:, None, :]  # (N, 1, L)
        rows = ctx.rows
        color = rows[:, _COLOR_COL].round().long().clamp(0, len(COLOR_NAMES) - 1)
        kind = len(COLOR_NAMES) + kind_of(rows)
        size = len(COLOR_NAMES) + len(_KINDS) + (rows[:, _SIZE_COL] >= SIZE_SPLIT).long()
        q = self.queries[torch.stack([color, kind, size], 1)].to(s.dtype)  # (N, 3, W)
        cos = self.adjust(ctx, torch.einsum("nqw,nlw->nql", q, nn.functional.normalize(s, dim=-1)))  # (N, 3, L)
        attn = torch.softmax((self.sharpness * cos).masked_fill(~own, -1e4), dim=-1) * own
        best = cos.masked_fill(~own, -1.0).amax(-1)  # (N, 3)
        has = own.any(-1).expand(-1, 3) & torch.stack([torch.ones_like(ctx.is_object), torch.ones_like(ctx.is_object),
                                                      ctx.is_object], 1)  # a zone row has no size word
        return attn, torch.sigmoid(self.slope * (best - self.match)) * has, s

    def adjust(self, ctx: ObjectContext, cos: torch.Tensor) -> torch.Tensor:
        """The (N, 3, L) cosine scores of each row's colour, kind and size word against its instruction's pieces, as
        the attention and the gate read them (here unchanged)."""
        return cos

    def forward(self, ctx: ObjectContext) -> torch.Tensor | None:
        out = ctx.memo("instruction_mentions", lambda: self.mentions(ctx))  # shared with `instruction_order`
        if out is None:
            return None
        attn, gate, s = out
        attended = torch.einsum("nql,nlw->nqw", attn, s)  # (N, 3, W)
        return self.value((gate[..., None] * attended).sum(1)) + gate @ self.said


def _text_width(setup: FeatureSetup, name: str) -> int:
    """The width W of the instruction encoder's states, for feature `name`; ValueError (one line) when the model has
    no `instruction` tokens."""
    if setup.text is None:
        raise ValueError(f"object feature '{name}' reads the instruction's encoder states: "
                         "list 'instruction' in model.prompt.tokens")
    return setup.text.width


def _instruction_map(setup: FeatureSetup, name: str) -> nn.Linear:
    """The zero-started map (W -> D) of a feature that reads the instruction's encoder states; ValueError (one line)
    when the model has no `instruction` tokens."""
    return _zero_map(setup.width, _text_width(setup, name))


def padded_instruction(ctx: ObjectContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None:
    """((B, L, W) states, (B, L) valid, (B, L) word-piece ids or None) of each example's instruction, padded to
    the batch's longest (L); None when the batch has no instruction. Computed once per context."""
    if ctx.instruction is None or not ctx.instruction[0].numel():
        return None

    def compute() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        states, where = ctx.instruction  # (M, W), (M,): each example's word pieces one after another
        n_examples = int(max(where.max(), ctx.scene.max())) + 1
        counts = torch.bincount(where, minlength=n_examples)
        pos = torch.arange(len(where), device=where.device) - (torch.cumsum(counts, 0) - counts)[where]
        padded = states.new_zeros(n_examples, int(counts.max()), states.shape[1])  # (B, L, W)
        padded[where, pos] = states
        valid = torch.zeros(padded.shape[:2], dtype=torch.bool, device=where.device)
        valid[where, pos] = True
        ids = None
        if ctx.instruction_ids is not None:
            ids = torch.full(padded.shape[:2], -1, dtype=torch.long, device=where.device)
            ids[where, pos] = ctx.instruction_ids
        return padded, valid, ids
    return ctx.memo("padded_instruction", compute)


def piece_ids(setup: FeatureSetup, name: str, words: Sequence[str]) -> torch.Tensor:
    """(len(words),) the instruction encoder's one word-piece id of each of `words`; ValueError (one line) when the
    model has no `instruction` tokens or a word is more than one piece."""
    _text_width(setup, name)
    ids = [setup.text.tokenizer.encode(w, add_special_tokens=False).ids for w in words]
    if any(len(i) != 1 for i in ids):
        raise ValueError(f"{name} needs one word piece per word in {setup.text.package}, "
                         f"got {dict(zip(words, ids, strict=True))}")
    return torch.tensor([i[0] for i in ids])


def piece_match(ctx: ObjectContext, groups: torch.Tensor) -> torch.Tensor | None:
    """(N, K, L) 1 where a piece of the row's own example's instruction has one of the ids of group k (`groups`:
    (K, G) word-piece ids, -2 for padding; an exact match, as DrQA's exact-match features, Chen et al. 2017), else 0;
    None when the batch has no instruction or no word-piece ids."""
    padded = padded_instruction(ctx)
    if padded is None or padded[2] is None:
        return None
    _, valid, ids = padded
    hit = (ids[ctx.scene][:, None, :, None] == groups[None, :, None, :]).any(-1)  # (N, K, L)
    return (hit & valid[ctx.scene][:, None, :]).to(padded[0].dtype)


# English size words, each one word piece of all-MiniLM-L6-v2: the grammar's (envs.tasks.pickplace.language.SIZE_WORDS)
# and the other common ones, comparatives and superlatives included.
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "smaller", "smallest", "tiny", "mini"),
    "large": ("large", "big", "bigger", "larger", "largest", "biggest", "huge", "giant"),
}
SIZE_SHIFT = 0.25  # the size words' starting weight, in cosine units (learnt from there)


@register_object_feature("instruction_phrases")
class InstructionPhrases(InstructionWords):
    """`instruction_words` whose mentions read the size word said before a name: which of two cubes of one colour
    the instruction names where ("the small orange cube on the big orange one").

    The encoder's states do not tell size words apart by cosine (all-MiniLM-L6-v2: the piece "small" scores 0.55
    against the word "small" and 0.37 against "large"; "bigger" 0.41 and 0.46), so `instruction_words`' size
    gate stays shut and both cubes of a colour attend to both of its mentions. Here a size word (`SIZE_WORDS`, found
    by its word-piece id, an exact match as DrQA's, Chen et al. 2017) one or two pieces before a piece adds
    b (learnt from `SIZE_SHIFT`) to the cosine of the row's colour and kind words there when it is the row's own size
    and takes b away when it is the other one; attention and gate read the shifted scores, so the cube that is not
    named there neither attends to it nor counts as said. Offline, pair scores fitted on these mentions read "i
    goes on j" right for 96% of held-out stack instructions' cubes against 84.5% on `instruction_words`' mentions
    (training grammar, train-range seeds; results/palme_tiny_recipe/results.md, stop 40). Stands in for `instruction_words` (`provides`); not with it.
    """

    provides = ("instruction_words",)

    def __init__(self, setup: FeatureSetup) -> None:
        super().__init__(setup)
        groups = [piece_ids(setup, "instruction_phrases", SIZE_WORDS[size]) for size in SIZE_NAMES]
        ids = torch.full((len(groups), max(len(g) for g in groups)), -2, dtype=torch.long)  # -2: padding
        for k, g in enumerate(groups):
            ids[k, :len(g)] = g
        self.register_buffer("size_ids", ids, persistent=False)  # (2, G): small, large
        self.shift = nn.Parameter(torch.tensor(SIZE_SHIFT))  # b

    def adjust(self, ctx: ObjectContext, cos: torch.Tensor) -> torch.Tensor:
        match = piece_match(ctx, self.size_ids)  # (N, 2, L)
        if match is None:
            return cos
        own = 2 * (ctx.rows[:, _SIZE_COL] >= SIZE_SPLIT).to(cos.dtype) - 1  # +1 large, -1 small
        said = (match[:, 1] - match[:, 0]) * (own * ctx.is_object)[:, None]  # (N, L): +1 own size word, -1 other
        before = nn.functional.pad(said, (1, 0))[:, :-1] + nn.functional.pad(said, (2, 0))[:, :-2]
        shift = self.shift * before.to(cos.dtype)
        return cos + torch.stack([shift, shift, torch.zeros_like(shift)], 1)


def matched_states(ctx: ObjectContext, match: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """((N, K, W) mean encoder state of the pieces each match row marks, (N, K) how many it marks)."""
    said = match.sum(-1)
    states = padded_instruction(ctx)[0]
    return torch.einsum("nkl,nlw->nkw", match, states[ctx.scene].to(match.dtype)) / said.clamp(min=1)[..., None], said


def weighted_words(value: nn.Linear, said: torch.Tensor, weight: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """(N, D) sum_k weight_k (V mean_k + e): V = `value` (W -> D), e = `said` (D,); weight (N, K), mean (N, K, W)."""
    return value((weight[..., None] * mean).sum(1)) + weight.sum(1, keepdim=True) * said


SIDE_WORDS = ("left", "right")  # board halves y < 0 / y > 0 (side_together.on_side; location_weights' last columns)


@register_object_feature("instruction_sides")
class InstructionSides(ObjectFeature):
    """The instruction's word for the board half the object lies in, in context.

    For half h in ("left", "right"), with soft weight w_h of the object lying in it (`location_weights`' last two
    columns: y < 0 is left, as Language-Table's side_together), the pieces t of its own example's instruction whose
    word-piece id is h's (an exact match, as DrQA's exact-match features, Chen et al. 2017: the frozen encoder's
    states of "left" and "right" in one sentence are too close for `instruction_words`' cosine match) give the
    mean state m_h of those pieces and a gate g_h (whether h is said). Output (N, D): sum_h w_h g_h (V m_h + e),
    V (W -> D) and e learnt from zero; zone rows get nothing. A word's state in context says what the sentence does
    with its half ("gather the blocks on the left side" / "... from the left side"), which a block then carries
    in its own token. Needs the `instruction` token type; examples without an instruction get nothing.
    """

    reads_instruction = True

    def __init__(self, setup: FeatureSetup) -> None:
        super().__init__(setup)
        self.value = _instruction_map(setup, "instruction_sides")  # V
        self.register_buffer("side_ids", piece_ids(setup, "instruction_sides", SIDE_WORDS)[:, None],
                             persistent=False)  # (2, 1)
        self.said = nn.Parameter(torch.zeros(setup.width))  # e

    def forward(self, ctx: ObjectContext) -> torch.Tensor | None:
        match = piece_match(ctx, self.side_ids)  # (N, 2, L)
        if match is None:
            return None
        mean, said = matched_states(ctx, match)
        half = location_weights(ctx.rows)[:, -2:].to(match.dtype) * ctx.is_object[:, None]  # (N, 2)
        weight = half * (said > 0)  # w_h g_h
        return weighted_words(self.value, self.said, weight, mean)


# the words of CORNERS' two parts as the push grammar says them (envs.tasks.push.language.CORNER_SYNONYMS)
CORNER_PART_WORDS = {"top": ("top", "upper"), "bottom": ("bottom", "lower"), "left": ("left",), "right": ("right",)}


@register_object_feature("instruction_corners")
class InstructionCorners(ObjectFeature):
    """The instruction's words for a board corner the object is the scene's nearest block to, in context.

    For corner c of `CORNERS` ("top left", ...), with soft weight n_c of the object being its scene's block nearest
    to c (`nearest_weights`, the choice of PaLM-E's T1 "the block closest to the top left corner"), the pieces of its
    own example's instruction whose word-piece id is one of c's two parts' words (`CORNER_PART_WORDS`: "top" /
    "upper" and "left"; an exact match, as `instruction_sides`) give their mean state m_c, and the gate g_c is
    whether both parts are said. Output (N, D): sum_c n_c g_c (V m_c + e), V (W -> D) and e learnt from zero; zone
    rows get nothing. The words' states in context say what the sentence does with that corner (choose the block
    nearest it, or push a block to it). Needs the `instruction` token type; examples without an instruction get
    nothing.
    """

    reads_instruction = True

    def __init__(self, setup: FeatureSetup) -> None:
        super().__init__(setup)
        self.value = _instruction_map(setup, "instruction_corners")  # V
        words = sorted({w for ws in CORNER_PART_WORDS.values() for w in ws})
        ids = dict(zip(words, piece_ids(setup, "instruction_corners", words).tolist(), strict=True))
        width = max(len(ws) for ws in CORNER_PART_WORDS.values())
        part = {p: [ids[w] for w in ws] + [-2] * (width - len(ws)) for p, ws in CORNER_PART_WORDS.items()}
        parts = [c.split() for c in CORNERS]
        self.register_buffer("groups", torch.tensor([part[v] + part[h] for v, h in parts]), persistent=False)
        self.register_buffer("vertical", torch.tensor([part[v] for v, _ in parts]), persistent=False)
        self.register_buffer("horizontal", torch.tensor([part[h] for _, h in parts]), persistent=False)
        self.said = nn.Parameter(torch.zeros(setup.width))  # e

    def forward(self, ctx: ObjectContext) -> torch.Tensor | None:
        match = piece_match(ctx, self.groups)  # (N, 4, L)
        if match is None:
            return None
        mean, _ = matched_states(ctx, match)
        both = (piece_match(ctx, self.vertical).sum(-1) > 0) & (piece_match(ctx, self.horizontal).sum(-1) > 0)
        nearest = nearest_weights(ctx.rows, ctx.scene, ctx.is_object).to(match.dtype)  # (N, 4)
        return weighted_words(self.value, self.said, nearest * both, mean)  # weight n_c g_c


ORDER_BINS = 3  # mention ranks 0, 1 and 2-or-more, counted from the instruction's start and from its end
ORDER_SHARPNESS = 3.0  # per word piece: a mention two pieces before another ranks before it with weight ~1
SENTENCE_WIDTH = 32  # the instruction's sentence vector, projected, that the rank's map reads


@register_object_feature("instruction_order")
class InstructionOrder(ObjectFeature):
    """The place of the object's mention among the objects the instruction names, read with the whole sentence.

    From `instruction_words`' attention of the object's colour and size words over its example's instruction
    (gates g_c, g_s): mention weight m = g_c + g_s - g_c g_s and position p = the gate-weighted mean of the two
    attended piece indices. Over the example's other objects o, the soft rank from the start r = sum_o m_o
    sigmoid(k (p - p_o)) and from the end r' = sum_o m_o sigmoid(k (p_o - p)), k = `ORDER_SHARPNESS`; each falls
    into `ORDER_BINS` triangular bins (the last one "2 or more"). Output (N, D): m sum_b w_b (e_b + U_b P z), z the
    mean of the instruction's encoder states (all-MiniLM-L6-v2's own sentence vector), P (W -> `SENTENCE_WIDTH`)
    learnt from a random start, e_b and U_b learnt from zero; zone rows get nothing. Which end of a list is the
    bottom of a tower ("the a on the b on the c" / "a tower of a, b and c, bottom first") is a matter of the
    sentence; where the cube's name stands among the others is what this adds. A linear probe of the encoder's
    state of a tower cube's colour word tells its place in the tower from the state alone on 92% of held-out
    3-cube instructions, 97% with the rank (results/palme_tiny_recipe/results.md, stop 38).
    Needs `instruction_words` (or `instruction_phrases`) before it; examples without an instruction get nothing.
    """

    reads_instruction = True
    requires = ("instruction_words",)

    def __init__(self, setup: FeatureSetup) -> None:
        super().__init__(setup)
        self.sentence = nn.Linear(_text_width(setup, "instruction_order"), SENTENCE_WIDTH)  # P
        self.said = nn.Parameter(torch.zeros(2 * ORDER_BINS, setup.width))  # e_b
        self.value = nn.Parameter(torch.zeros(2 * ORDER_BINS, SENTENCE_WIDTH, setup.width))  # U_b

    def ranks(self, ctx: ObjectContext) -> tuple[torch.Tensor, torch.Tensor] | None:
        """((N,) mention weight m, (N, 2) soft rank from the start and from the end) of each row; None when the
        batch has no instruction."""
        mentions = ctx.memo("instruction_mentions", lambda: None)
        if mentions is None:
            return None
        attn, gate, _ = mentions  # (N, 3, L), (N, 3): colour, kind, size
        g = gate[:, [0, 2]] * ctx.is_object[:, None]  # (N, 2) colour, size
        where = (attn[:, [0, 2]] * torch.arange(attn.shape[-1], device=attn.device, dtype=attn.dtype)).sum(-1)
        pos = (g * where).sum(1) / g.sum(1).clamp(min=1e-6)  # (N,)
        m = g[:, 0] + g[:, 1] - g[:, 0] * g[:, 1]
        others = (ctx.scene[:, None] == ctx.scene[None, :]) & ~torch.eye(len(m), dtype=torch.bool, device=m.device)
        before = torch.sigmoid(ORDER_SHARPNESS * (pos[:, None] - pos[None, :])) * others * m[None, :]  # (N, N)
        after = torch.sigmoid(ORDER_SHARPNESS * (pos[None, :] - pos[:, None])) * others * m[None, :]
        return m, torch.stack([before.sum(1), after.sum(1)], 1)

    def forward(self, ctx: ObjectContext) -> torch.Tensor | None:
        out = self.ranks(ctx)
        if out is None:
            return None
        m, rank = out
        states, valid, _ = padded_instruction(ctx)
        v = valid.to(states.dtype)[..., None]
        z = self.sentence(((states * v).sum(1) / v.sum(1).clamp(min=1)).to(self.value.dtype))[ctx.scene]  # (N, P)
        bins = torch.arange(ORDER_BINS, device=rank.device, dtype=rank.dtype)
        w = torch.relu(1 - (rank.clamp(max=ORDER_BINS - 1)[..., None] - bins).abs()).flatten(1)  # (N, 2 * bins)
        w = (m[:, None] * w).to(self.value.dtype)
        return w @ self.said + torch.einsum("nb,np,bpd->nd", w, z, self.value)


PAIR_WIDTH = 32  # the width of the mention states' projections that score "the instruction puts i on j"
SUPPORT_LOSS_WEIGHT = 0.5  # of its auxiliary loss against the goal's supports, beside the answers' (chosen, not tuned)


@register_object_feature("instruction_support")
class InstructionSupport(ObjectFeature):
    """The cube the instruction puts the object on and the cube it puts on the object, as words, and whether each
    already is there.

    From `instruction_words`' attention of the object's colour and size words over its example's instruction
    (gates g_c, g_s): the object's mention state u_i (the gate-weighted mean of the two attended states, W wide)
    and mention weight m_i = g_c + g_s - g_c g_s. For the other objects j of its scene, the score that the
    sentence puts i on j is s_ij = (A u_i) . (B u_j) (u normalised to unit length); against a learnt "on no named
    cube" score b, p_ij = softmax_j over (s_ij + log m_j, b) ("the a on the b on the c": a on b, b on c, c on none)
    and q_ij = softmax_j over (s_ji + log m_j, b) (who goes on i). With the LM's words w_j of each object and the
    scene's soft "j is above i" weights S_ij (`geometry.support_weights`): output (N, D) = m_i (U_1 sum_j p_ij w_j
    + U_2 sum_j q_ij w_j + (sum_j p_ij S_ji) e_1 + (sum_j q_ij S_ij) e_2); A, B (W -> `PAIR_WIDTH`) learnt from a random start,
    U_1, U_2 (D -> D), e_1, e_2 and b learnt from zero; zone rows get nothing. Besides the answers, training
    teaches p_i. the goal's supports directly (`aux_loss`, target `support_goal`: `Task.goal_supports`), as
    auxiliary tasks do in RL (UNREAL, Jaderberg et al. 2017): through the LM alone the pair scores barely move. A planner of a tower compares "the
    cube I go on" with `words_below`' "the cube I am on"; a linear probe of the encoder's state of a tower cube's
    colour word tells its place in the tower on 92% of held-out 3-cube instructions (results/palme_tiny_recipe/
    results.md, stop 38). Needs `instruction_words` (or `instruction_phrases`) before it; examples without an instruction get nothing.
    """

    reads_instruction = True
    requires = ("words", "instruction_words")
    targets = ("support_goal",)

    def __init__(self, setup: FeatureSetup) -> None:
        super().__init__(setup)
        width = _text_width(setup, "instruction_support")
        self.query = nn.Linear(width, PAIR_WIDTH, bias=False)  # A
        self.key = nn.Linear(width, PAIR_WIDTH, bias=False)  # B
        self.none = nn.Parameter(torch.zeros(()))  # b
        self.under = _zero_map(setup.width)  # U_1
        self.over = _zero_map(setup.width)  # U_2
        self.placed = nn.Parameter(torch.zeros(2, setup.width))  # e_1, e_2

    def pairs(self, ctx: ObjectContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """((N,) mention weight m, (N, N) p_ij "i goes on j", (N, N) q_ij "j goes on i") of each row; None when the
        batch has no instruction."""
        mentions = ctx.memo("instruction_mentions", lambda: None)
        if mentions is None:
            return None
        attn, gate, s = mentions  # (N, 3, L), (N, 3): colour, kind, size; (N, L, W)
        g = gate[:, [0, 2]] * ctx.is_object[:, None]  # (N, 2)
        weight = (g[..., None] * attn[:, [0, 2]]).sum(1)  # (N, L): one batched product, no (N, 2, L, W) temporary
        u = torch.bmm(weight[:, None, :].to(s.dtype), s)[:, 0] / g.sum(1, keepdim=True).clamp(min=1e-6)
        m = g[:, 0] + g[:, 1] - g[:, 0] * g[:, 1]
        u = nn.functional.normalize(u.to(self.query.weight.dtype), dim=-1)
        score = self.query(u) @ self.key(u).T  # (N, N): row i, column j: i goes on j
        named = torch.log(m.clamp(min=1e-4))[None, :]  # log m_j: a cube the sentence does not name takes no part
        others = (ctx.scene[:, None] == ctx.scene[None, :]) & ctx.is_object[:, None] & ctx.is_object[None, :]
        others &= ~torch.eye(len(m), dtype=torch.bool, device=m.device)

        def softmax_with_none(logits: torch.Tensor) -> torch.Tensor:
            full = torch.cat([logits.masked_fill(~others, -torch.inf), self.none.expand(len(m), 1)], 1)
            return torch.softmax(full, dim=1)[:, :-1] * others

        return m, softmax_with_none(score + named), softmax_with_none(score.T + named)

    def forward(self, ctx: ObjectContext) -> torch.Tensor | None:
        out = ctx.memo("support_pairs", lambda: self.pairs(ctx))
        if out is None:
            return None
        m, on, under = out
        words = ctx.words.to(on.dtype)
        above = stacks(ctx).to(on.dtype)  # (N, N): row i, column j: j is above i
        there = torch.stack([(on * above.T).sum(1), (under * above).sum(1)], 1)  # i on its cube; its cube on i
        return m[:, None] * (self.under(on @ words) + self.over(under @ words) + there @ self.placed)

    def aux_loss(self, ctx: ObjectContext) -> torch.Tensor | None:
        """`SUPPORT_LOSS_WEIGHT` x the cross-entropy of p_i. (the cube i goes on, or none) against the goal's
        (target `support_goal`: `Task.goal_supports`, -1 for none), averaged over the batch's labelled rows with
        weights m_i (what a cube the sentence does not name gets from it does not count)."""
        out = ctx.memo("support_pairs", lambda: self.pairs(ctx))
        target = ctx.targets["support_goal"]
        keep = target != IGNORE_TARGET
        if out is None or not bool(keep.any()):
            return None
        m, on, _ = out
        none = (1 - on.sum(1)).clamp(min=0)
        p = torch.where(target >= 0, on[torch.arange(len(on), device=on.device), target.clamp(min=0)], none)
        w = m.detach() * keep  # a cube the sentence does not name has no say in its pairs
        return SUPPORT_LOSS_WEIGHT * -(w * torch.log(p.clamp(min=1e-6))).sum() / w.sum().clamp(min=1e-6)
