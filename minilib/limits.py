"""The limits of one vector: which top-k sets a d-dimensional embedding can return, and what to
do when it cannot.

Weller et al. (2025) ask how many documents ``n`` a ``d``-dimensional embedding can handle if
*every* pair of documents must be the top-2 answer of some query. Read this module top to
bottom, as chapter 13 builds it:

1. :func:`top2_qrels`, :func:`qrel_matrix`, :func:`solved`, :func:`threshold_matrix`: the
   relevance matrix of all top-2 subsets, the test "is every query answered exactly", and the
   thresholded score matrix behind the sign-rank bound;
2. :func:`free_embedding`: the best case for a single vector, query and document vectors
   optimised directly on the test set (no text, no encoder), several restarts in one batch;
3. :func:`critical_n`: the largest ``n`` that free embeddings solve at dimension ``d``, found by
   an upward search; :func:`published_critical_n`, the paper's cubic fit;
4. :func:`moment_curve`: an exact construction that solves every top-``k`` set of any ``n``
   documents in ``2k`` dimensions, in exact arithmetic (what the optimiser cannot find);
5. :func:`limit_dataset`: a LIMIT-style text collection, "Who likes quokkas?", whose queries
   cover all pairs of a core of documents, padded with distractors; :func:`recall`;
6. :func:`maxsim` and :class:`MultiVector`: ColBERT-style late interaction over the token
   vectors of a frozen encoder (all-MiniLM-L6-v2), searched exactly.

BM25, the sparse baseline of the chapter, is in :mod:`minilib.sparse`.

Defined in chapter 13.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "top2_qrels", "qrel_matrix", "solved", "threshold_matrix",
    "FreeEmbedding", "free_embedding", "CriticalN", "critical_n",
    "PUBLISHED_FIT", "PUBLISHED_POINTS", "published_critical_n", "moment_curve",
    "ATTRIBUTES", "LimitDataset", "limit_dataset", "recall",
    "maxsim", "MultiVector",
]


# --- 1. the relevance matrix of all top-2 subsets ---------------------------------------------


def _check_int(value, name: str, low: int, why: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low} ({why}), got {value!r}")
    return int(value)


def top2_qrels(n: int) -> np.ndarray:
    """Every pair of ``n`` documents as the relevant set of one query: ``(C(n, 2), 2)`` int64.

    Row ``i`` holds the two relevant document ids of query ``i``, smaller id first, pairs in
    lexicographic order: ``top2_qrels(4)`` is ``[[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]``.

    Defined in chapter 13.
    """
    n = _check_int(n, "n", 3, "with 2 documents the only pair is all of them")
    return np.array(list(itertools.combinations(range(n), 2)), dtype=np.int64)


def qrel_matrix(qrels, n: int) -> np.ndarray:
    """The 0/1 relevance matrix ``A`` ``(m, n)`` int8 of ``qrels`` ``(m, k)`` (relevant ids per query).

    ``A[i, j] = 1`` when document ``j`` is relevant to query ``i``. Its sign pattern ``2A - 1``
    is the matrix whose sign rank bounds the dimension (chapter 13, the sign-rank argument).

    Defined in chapter 13.
    """
    qrels = _check_qrels(qrels, n)
    A = np.zeros((len(qrels), n), dtype=np.int8)
    A[np.arange(len(qrels))[:, None], qrels] = 1
    return A


def _check_qrels(qrels, n: int | None = None) -> np.ndarray:
    q = np.asarray(qrels)
    if q.ndim != 2 or q.shape[0] == 0 or q.shape[1] == 0 or not np.issubdtype(q.dtype, np.integer):
        raise ValueError(f"qrels must be a non-empty (m, k) integer array of relevant document ids, "
                         f"got shape {q.shape} and dtype {q.dtype}")
    if (q < 0).any() or (n is not None and (q >= n).any()):
        raise ValueError(f"qrels hold ids outside 0..{'n-1' if n is None else n - 1}: "
                         "every relevant id must name a document")
    if (np.sort(q, axis=1)[:, 1:] == np.sort(q, axis=1)[:, :-1]).any():
        raise ValueError("a query lists the same relevant document twice: relevant ids must be distinct")
    return q.astype(np.int64)


def _margins(S: torch.Tensor, pos: torch.Tensor, is_pos: torch.Tensor) -> torch.Tensor:
    """Worst relevant score minus best other score, per query: ``(..., m, n) -> (..., m)``."""
    worst_pos = torch.gather(S, -1, pos.expand(*S.shape[:-1], pos.shape[-1])).min(-1).values
    best_neg = S.masked_fill(is_pos, -math.inf).max(-1).values
    return worst_pos - best_neg


def solved(scores, qrels) -> np.ndarray:
    """For each query, whether *every* relevant document scores strictly above *every* other.

    ``scores`` ``(m, n)`` (query-by-document, e.g. ``Q @ D.T``), ``qrels`` ``(m, k)``. Returns a
    boolean ``(m,)``; ``solved(...).all()`` is the paper's "100 % accuracy". Ties count as
    failures: a query whose relevant document ties with another is not answered exactly.

    Defined in chapter 13.
    """
    S = torch.as_tensor(np.asarray(scores, dtype=np.float64))
    if S.dim() != 2:
        raise ValueError(f"scores must be a matrix (m queries, n documents), got shape {tuple(S.shape)}")
    q = _check_qrels(qrels, S.shape[1])
    if len(q) != S.shape[0]:
        raise ValueError(f"scores has {S.shape[0]} rows but qrels {len(q)}: one row of qrels per query")
    if q.shape[1] >= S.shape[1]:
        raise ValueError("every document is relevant to every query: there is nothing to rank below them")
    pos = torch.from_numpy(q)
    is_pos = torch.from_numpy(qrel_matrix(q, S.shape[1]).astype(bool))
    return (_margins(S, pos, is_pos) > 0).numpy()


def threshold_matrix(scores, qrels) -> np.ndarray:
    """``S - tau 1^T``: each query's scores minus a threshold halfway between its worst relevant
    and its best other document, ``(m, n)`` float64.

    Where every query is solved, its signs are exactly ``2A - 1`` (+1 relevant, -1 not) and its
    rank is at most ``rank(S) + 1``. That is the step of the sign-rank bound: a solution in
    ``d`` dimensions gives a matrix of rank ``<= d + 1`` with the sign pattern of the qrels.

    Defined in chapter 13.
    """
    S = np.asarray(scores, dtype=np.float64)
    ok = solved(S, qrels)
    if not ok.all():
        raise ValueError(f"{(~ok).sum()} of {len(ok)} queries are not solved: no threshold separates their "
                         "relevant documents from the others")
    q = _check_qrels(qrels, S.shape[1])
    is_pos = qrel_matrix(q, S.shape[1]).astype(bool)
    worst_pos = np.where(is_pos, S, np.inf).min(1)
    best_neg = np.where(is_pos, -np.inf, S).max(1)
    tau = (worst_pos + best_neg) / 2                       # (m,) one threshold per query
    return S - tau[:, None]


# --- 2. free embeddings: the best case for one vector per text ---------------------------------

LOSSES = ("softmax", "infonce")


@dataclass
class FreeEmbedding:
    """What :func:`free_embedding` returns.

    ``solved``: some restart answered every query exactly; ``steps``: Adam steps taken (the run
    stops at the first check where a restart is solved); ``accuracy``: the share of queries
    solved by the best restart; ``Q`` ``(m, d)`` and ``D`` ``(n, d)``: that restart's unit
    vectors (float32); ``history``: ``(step, loss, accuracy)`` at every check, best restart's
    accuracy, mean loss over restarts.

    Defined in chapter 13.
    """

    n: int
    d: int
    solved: bool
    steps: int
    accuracy: float
    restart: int
    Q: np.ndarray
    D: np.ndarray
    history: list = field(default_factory=list, repr=False)


def free_embedding(n: int, d: int, *, steps: int = 5000, lr: float = 0.05, temperature: float = 0.1,
                   restarts: int = 4, loss: str = "softmax", check_every: int = 25, seed: int = 0,
                   device: str | torch.device = "cpu") -> FreeEmbedding:
    """Optimise one unit vector per query and per document so that, for every pair of the ``n``
    documents, the query of that pair ranks exactly those two documents first.

    No text, no encoder: the ``C(n, 2) x d`` query matrix and the ``n x d`` document matrix are the
    parameters, trained with Adam on the test set itself, full batch: the best case for an embedding
    model of dimension ``d`` trained by gradient descent, which must in addition compute its vectors
    from text. (Exact solutions can exist beyond what this finds: see :func:`moment_curve`.)

    ``loss="softmax"``: cross-entropy of a softmax over all ``n`` documents (scores / ``temperature``)
    against the target distribution that puts 1/2 on each relevant document. ``loss="infonce"``:
    each relevant document against all irrelevant ones (InfoNCE, the other relevant document left
    out of the denominator). ``restarts`` independent initialisations run as one batch; the result
    is solved if any is. Checked every ``check_every`` steps with :func:`solved`'s strict rule.
    Deterministic for a ``seed`` on a device (initial values are drawn on the CPU).

    Defined in chapter 13.
    """
    n = _check_int(n, "n", 3, "with 2 documents the only pair is all of them")
    d = _check_int(d, "d", 1, "the embedding dimension")
    steps = _check_int(steps, "steps", 1, "Adam steps")
    restarts = _check_int(restarts, "restarts", 1, "independent starts run as one batch")
    check_every = _check_int(check_every, "check_every", 1, "steps between checks")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if not temperature > 0 or not lr > 0:
        raise ValueError(f"temperature and lr must be positive, got {temperature!r} and {lr!r}")
    device = torch.device(device)
    pairs = top2_qrels(n)
    m = len(pairs)
    pos = torch.from_numpy(pairs).to(device)                                     # (m, 2)
    is_pos = torch.from_numpy(qrel_matrix(pairs, n).astype(bool)).to(device)     # (m, n)

    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + n * 1009 + d)
    Q = torch.randn(restarts, m, d, generator=g).to(device).requires_grad_()     # (R, m, d)
    D = torch.randn(restarts, n, d, generator=g).to(device).requires_grad_()     # (R, n, d)
    opt = torch.optim.Adam([Q, D], lr=lr)
    history = []
    step = 0
    while True:
        q, x = F.normalize(Q, dim=-1), F.normalize(D, dim=-1)
        S = q @ x.transpose(1, 2) / temperature                                # (R, m, n) logits
        S_pos = torch.gather(S, 2, pos.expand(restarts, m, 2))                  # (R, m, 2)
        if loss == "softmax":
            per_query = torch.logsumexp(S, -1) - S_pos.mean(-1)                 # (R, m)
        else:
            lse_neg = torch.logsumexp(S.masked_fill(is_pos, -math.inf), -1, keepdim=True)
            per_query = (torch.logaddexp(S_pos, lse_neg) - S_pos).sum(-1)
        objective = per_query.mean(-1)                                          # (R,)
        if step % check_every == 0 or step == steps:
            with torch.no_grad():
                ok = _margins(S, pos, is_pos) > 0                               # (R, m) query solved?
                acc = ok.float().mean(-1)                                       # (R,)
                history.append((step, float(objective.mean()), float(acc.max())))
                if bool(ok.all(-1).any()) or step == steps:
                    break
        opt.zero_grad(set_to_none=True)
        objective.sum().backward()   # restarts are independent: summing keeps their gradients apart
        opt.step()
        step += 1

    # The loop ends at a check, before any update: Q, D, ok and acc describe the same vectors.
    r = int(torch.argmax(acc))  # the first maximum: the lowest-numbered solved (or best) restart
    with torch.no_grad():
        Qr = F.normalize(Q[r], dim=-1).float().cpu().numpy()
        Dr = F.normalize(D[r], dim=-1).float().cpu().numpy()
    return FreeEmbedding(n=n, d=d, solved=bool(ok[r].all()), steps=step, accuracy=float(acc[r]),
                         restart=r, Q=Qr, D=Dr, history=history)


@dataclass
class CriticalN:
    """What :func:`critical_n` returns: ``d``, the critical ``n`` (largest solved before the first
    failure) and every trial as ``(n, solved, steps, accuracy)`` in the order run.

    Defined in chapter 13.
    """

    d: int
    n: int
    trials: list = field(default_factory=list)


def critical_n(d: int, *, start: int | None = None, max_n: int = 100_000, progress: bool = False,
               **kwargs) -> CriticalN:
    """The largest number of documents whose every pair free embeddings of dimension ``d`` solve.

    The search is the paper's: try ``n``, and while :func:`free_embedding` solves it, try ``n + 1``;
    the critical ``n`` is the last one solved before the first failure. It starts at ``start``
    (default ``d + 1``; a good start is the critical ``n`` of a smaller ``d``), and if ``start``
    itself fails it steps down until a success. One trial counts as solved if any of its
    ``restarts`` is. ``kwargs`` go to :func:`free_embedding` (steps, lr, temperature, restarts,
    loss, seed, device). Two documents are always solved, so the answer is at least 2.

    Defined in chapter 13.
    """
    d = _check_int(d, "d", 1, "the embedding dimension")
    n = max(3, d + 1 if start is None else _check_int(start, "start", 1, "the first n to try"))
    trials = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc=f"critical n, d={d}", leave=False)

    def attempt(k: int) -> bool:
        r = free_embedding(k, d, **kwargs)
        trials.append((k, r.solved, r.steps, r.accuracy))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(n=k, solved=r.solved)
        return r.solved

    if attempt(n):
        while n < max_n and attempt(n + 1):
            n += 1
        best = n
    else:
        best = 2
        for k in range(n - 1, 2, -1):
            if attempt(k):
                best = k
                break
    if bar is not None:
        bar.close()
    return CriticalN(d=d, n=best, trials=trials)


# The cubic Weller et al. (2025) fit to their measured critical n (free embeddings, k = 2), and
# the measured points as reported (approximate): the targets of chapter 13.
PUBLISHED_FIT = (-10.5322, 4.0309, 0.0520, 0.0037)   # y = c0 + c1 d + c2 d^2 + c3 d^3
PUBLISHED_POINTS = {4: 8, 8: 28, 12: 48, 16: 78}


def published_critical_n(d) -> np.ndarray:
    """The published cubic fit of critical ``n`` against ``d``: ``-10.53 + 4.031 d + 0.0520 d^2 + 0.0037 d^3``.

    Accepts a number or an array; returns float(s). Below ``d = 4`` the fit is outside the range it
    was fitted on (it goes negative at ``d = 2``).

    Defined in chapter 13.
    """
    d = np.asarray(d, dtype=np.float64)
    c0, c1, c2, c3 = PUBLISHED_FIT
    return c0 + c1 * d + c2 * d ** 2 + c3 * d ** 3


# --- 4. an exact construction: the moment curve ---------------------------------------------------


def moment_curve(n: int, k: int = 2, unit: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Query and document vectors that solve *every* top-``k`` subset of ``n`` documents exactly,
    in ``2k`` dimensions (``2k + 1`` with ``unit=True``), for any ``n``: ``(Q, D, qrels)`` float64.

    Document ``j`` is the point ``(t_j, t_j^2, ..., t_j^{2k})`` of the moment curve, ``t_j`` evenly
    spaced in ``[-1, 1]``. The query of a subset ``T`` holds the coefficients (degree 1 to ``2k``) of
    the polynomial ``p(t) = -prod_{s in T} (t - t_s)^2``, so its score for document ``j`` is
    ``p(t_j)`` minus the constant term: zero-plus-constant on ``T``, strictly lower everywhere else.
    ``unit=True`` adds one coordinate, ``sqrt(R^2 - |x_j|^2)``, so that every document has length
    ``R`` (rescaled to 1) and queries get a 0 there: the scores keep their order. The gaps shrink
    like ``n^(-2k)``, so float32 stops separating them long before float64 does.

    Defined in chapter 13.
    """
    n = _check_int(n, "n", 3, "with fewer documents there is nothing to rank")
    k = _check_int(k, "k", 1, "documents per relevant set")
    if k >= n:
        raise ValueError(f"k={k} must be smaller than n={n}: a query needs documents that are not relevant")
    t = np.linspace(-1.0, 1.0, n)
    D = t[:, None] ** np.arange(1, 2 * k + 1)                                     # (n, 2k)
    qrels = np.array(list(itertools.combinations(range(n), k)), dtype=np.int64)
    Q = np.empty((len(qrels), 2 * k))
    for i, subset in enumerate(qrels):
        roots = np.repeat(t[subset], 2)                         # each relevant t_s a double root
        coef = np.polynomial.polynomial.polyfromroots(roots)    # ascending powers, constant first
        Q[i] = -coef[1:]                                        # drop the constant: it shifts every score alike
    if unit:
        sq = (D ** 2).sum(1)
        R2 = sq.max()
        D = np.concatenate([D, np.sqrt(R2 - sq)[:, None]], axis=1) / math.sqrt(R2)
        Q = np.concatenate([Q, np.zeros((len(Q), 1))], axis=1)
    return Q, D, qrels


# --- 5. a LIMIT-style collection -----------------------------------------------------------------

# Things people like: 1,392 single words (one token for minilib.text.tokenize), written for this
# book. Queries use some, distractor documents the others, so that every query has exactly the
# relevant documents the qrels say.
_ATTRIBUTE_WORDS = """
aardvarks albatrosses alligators alpacas anchovies anemones angelfish anteaters antelopes ants
apes armadillos baboons badgers barnacles barracudas bats beagles bears beavers bees beetles
bison blackbirds bloodhounds boars bobcats bonobos buffaloes bulldogs bumblebees butterflies
buzzards camels canaries capybaras caribou carp caterpillars catfish cats centipedes chameleons
cheetahs chickens chihuahuas chimpanzees chinchillas chipmunks cicadas clams cobras cockatoos
cockroaches cod condors corals cormorants cougars cows coyotes crabs cranes crickets crocodiles
crows cuckoos dachshunds deer dingoes dogs dolphins donkeys doves dragonflies ducks dugongs
eagles eels egrets elephants elk emus falcons ferrets finches fireflies flamingos flounders
foxes frogs gazelles geckos geese gerbils gibbons giraffes gnus goats goldfinches goldfish
gophers gorillas grasshoppers greyhounds grouse guppies haddock halibut hamsters hares hawks
hedgehogs herons herrings hippos hornets horses hummingbirds hyenas ibises iguanas impalas
jackals jaguars jellyfish kangaroos kingfishers kiwis koalas kookaburras krill ladybirds lambs
lemmings lemurs leopards limpets lions lizards llamas lobsters locusts lynxes macaws magpies
mallards manatees mandrills marmosets marmots meerkats minks moles mongooses monkeys moose
mosquitoes moths mules mussels narwhals newts nightingales ocelots octopuses opossums orangutans
orcas ospreys ostriches otters owls oxen oysters pandas panthers parrots partridges peacocks
pelicans penguins pheasants pigeons pigs pikes piranhas platypuses pomeranians poodles
porcupines porpoises possums prawns pufferfish puffins pugs pumas quail quokkas rabbits raccoons
rams rats ravens reindeer rhinos robins roosters salamanders salmon sardines scorpions seahorses
seals sharks sheep shrews shrimps skunks sloths slugs snails snakes sparrows spiders squid
squirrels starfish starlings stingrays storks swallows swans tadpoles tapirs tarantulas termites
terriers tigers toads tortoises toucans trout tuna turkeys turtles vultures walruses warthogs
wasps weasels whales wolverines wolves wombats woodpeckers worms wrens yaks zebras apples
apricots avocados bananas blackberries blueberries cantaloupes cherries clementines coconuts
cranberries currants dates figs gooseberries grapefruits grapes guavas kumquats lemons limes
lychees mandarins mangoes melons nectarines olives oranges papayas peaches pears persimmons
pineapples plums pomegranates quinces raisins raspberries rhubarb strawberries tangerines
watermelons artichokes arugula asparagus beets broccoli cabbages carrots cauliflower celery
chickpeas chives cucumbers eggplants endives fennel garlic ginger kale leeks lentils lettuce
mushrooms okra onions parsnips peas peppers potatoes pumpkins radishes rutabagas scallions
shallots spinach sprouts squash turnips yams zucchini beans soybeans edamame almonds cashews
chestnuts hazelnuts peanuts pecans pistachios walnuts sesame sunflowers bagels baguettes
biscuits brownies buns burritos cakes cannoli casseroles cereal cheesecake chowder cookies
crackers croissants crumpets cupcakes curry custard doughnuts dumplings enchiladas falafel
fritters fudge gelato gnocchi goulash granola gravy hamburgers hummus jam jelly kebabs ketchup
lasagna macaroni marmalade marshmallows mayonnaise meatballs meringues muffins mustard nachos
noodles oatmeal omelettes pancakes pasta pastries pies pizza popcorn porridge pretzels puddings
quesadillas quiche ravioli risotto salads salsa sandwiches sauerkraut sausages scones sorbet
souffles soup spaghetti stew sushi tacos tamales tapas tarts toast tofu tortillas truffles
waffles yogurt bacon beef brisket butter cheese chocolate cream eggs ham honey lamb liver mutton
pork poultry steak syrup vinegar caramel licorice toffee nougat praline molasses cinnamon nutmeg
paprika saffron vanilla oregano basil rosemary thyme parsley cilantro mint dill sage cumin
turmeric pepper wasabi pickles tempura ramen udon paella pesto polenta couscous quinoa barley
oats rice rye wheat millet buckwheat sourdough brioche focaccia pita ciabatta cornbread
flapjacks churros baklava tiramisu mochi kimchi miso coffee tea cocoa lemonade milkshakes
smoothies cider juice soda espresso cappuccino lattes kombucha wine beer champagne whiskey rum
gin vodka brandy sherry sake tequila mead roses tulips daisies lilies orchids violets daffodils
lavender jasmine peonies poppies marigolds carnations chrysanthemums dahlias begonias geraniums
hydrangeas irises lilacs magnolias camellias azaleas gardenias hibiscus zinnias petunias pansies
snapdragons bluebells buttercups dandelions clover heather ferns mosses cacti succulents bamboo
ivy oaks maples pines birches willows cedars elms firs spruces redwoods sequoias palms cypresses
sycamores poplars beeches hawthorns hollies junipers acorns pinecones seaweed algae lichens
chess checkers backgammon dominoes poker bridge mahjong scrabble crosswords sudoku puzzles
riddles jigsaws cards dice marbles kites yoyos frisbees boomerangs skateboards rollerblades
scooters bicycles unicycles trampolines hammocks swings slides seesaws football soccer
basketball baseball volleyball handball hockey rugby cricket tennis badminton golf bowling
billiards snooker darts archery fencing boxing wrestling judo karate taekwondo kickboxing sumo
gymnastics cycling running jogging sprinting marathons triathlons swimming diving surfing
sailing rowing canoeing kayaking rafting snorkeling skiing snowboarding skating sledding curling
climbing bouldering hiking camping fishing hunting birdwatching gardening knitting sewing
quilting crochet embroidery weaving pottery sculpture painting drawing sketching calligraphy
origami photography filmmaking woodworking carpentry welding baking cooking brewing juggling
magic dancing ballet tango waltz yoga pilates meditation karaoke singing rapping acting poetry
storytelling blogging podcasts astronomy stargazing geocaching parkour polo lacrosse softball
netball rodeo falconry beekeeping foraging gliding skydiving paragliding ballooning jazz blues
rock punk reggae disco funk soul gospel opera techno trance dubstep folk bluegrass country swing
ragtime mambo flamenco samba polka symphonies sonatas concertos operettas musicals ballads
lullabies anthems carols hymns marches violins violas cellos basses guitars banjos mandolins
ukuleles harps lutes sitars pianos organs harpsichords accordions harmonicas flutes piccolos
clarinets oboes bassoons saxophones trumpets trombones tubas bugles horns bagpipes drums
tambourines xylophones marimbas cymbals gongs triangles castanets bongos kazoos synthesizers
hats caps berets bonnets helmets scarves gloves mittens socks stockings boots sandals slippers
sneakers loafers shoes jackets coats cardigans sweaters hoodies vests shirts blouses dresses
skirts kilts trousers jeans shorts pajamas robes kimonos saris ponchos capes cloaks tuxedos
suits ties bowties belts suspenders aprons overalls raincoats umbrellas sunglasses spectacles
earrings necklaces bracelets rings brooches pendants watches tiaras crowns wigs cars trucks vans
buses taxis trams trains subways locomotives motorcycles mopeds tractors bulldozers excavators
ambulances limousines jeeps wagons carriages sleighs sleds boats ships yachts canoes kayaks
rafts ferries submarines gondolas barges tugboats schooners galleons airplanes helicopters
gliders blimps zeppelins rockets satellites spaceships hovercraft castles palaces cathedrals
churches temples mosques pagodas pyramids lighthouses windmills bridges towers skyscrapers
cottages cabins igloos tents treehouses barns farms vineyards orchards gardens parks zoos
aquariums museums libraries theaters cinemas galleries stadiums arenas circuses carnivals fairs
markets bazaars harbors docks piers beaches islands volcanoes glaciers icebergs mountains hills
valleys canyons caves cliffs deserts dunes oases forests jungles meadows prairies savannas
swamps marshes lagoons lakes ponds rivers streams waterfalls fjords geysers springs reefs
tundras steppes plateaus rainbows sunsets sunrises thunderstorms lightning snowflakes hailstorms
fog mist clouds breezes tornadoes hurricanes blizzards puddles icicles dew frost moonlight
starlight comets meteors eclipses auroras constellations galaxies nebulas planets asteroids
books novels comics magazines newspapers diaries journals letters postcards stamps coins
banknotes maps globes atlases encyclopedias dictionaries almanacs calendars posters paintings
portraits murals mosaics tapestries statues figurines dolls puppets marionettes robots dinosaurs
fossils crystals gemstones diamonds rubies emeralds sapphires pearls opals amethysts topaz jade
amber gold silver copper bronze platinum marble granite quartz obsidian seashells pebbles
feathers candles lanterns lamps chandeliers mirrors clocks hourglasses compasses telescopes
microscopes binoculars cameras radios televisions computers laptops tablets telephones
typewriters gramophones headphones speakers calculators keyboards printers projectors batteries
magnets thermometers barometers sundials pendulums hammers screwdrivers wrenches pliers saws
drills chisels axes shovels rakes hoes spades trowels wheelbarrows ladders ropes chains pulleys
levers anvils bellows scissors needles thimbles buttons zippers ribbons beads sequins yarn
threads fabrics velvet silk satin linen wool cotton denim leather suede lace tweed flannel
cashmere teapots teacups kettles saucepans skillets woks spatulas ladles whisks colanders
graters blenders toasters ovens stoves fridges freezers dishwashers microwaves jars jugs
pitchers vases bowls plates saucers mugs goblets chalices tankards flasks thermoses lunchboxes
picnics barbecues bonfires fireworks sparklers balloons confetti streamers pinatas pillows
blankets quilts cushions rugs carpets curtains blinds sofas couches armchairs stools benches
desks tables wardrobes dressers bookshelves cupboards drawers cribs cradles beds fireplaces
chimneys staircases balconies verandas porches patios gazebos fountains greenhouses sheds
garages attics cellars algebra geometry calculus statistics trigonometry topology logic physics
chemistry biology botany zoology ecology geology meteorology oceanography genetics anatomy
neuroscience psychology sociology anthropology archaeology history geography economics
philosophy linguistics grammar etymology cryptography robotics electronics engineering
architecture medicine nursing pharmacy dentistry veterinary forestry agriculture horticulture
mythology folklore theology astrology alchemy heraldry cartography typography pirates knights
wizards witches dragons unicorns mermaids fairies elves dwarves giants trolls goblins ogres
vampires werewolves zombies ghosts mummies aliens cowboys ninjas samurai vikings gladiators
pharaohs emperors queens kings princesses princes jesters clowns acrobats jugglers magicians
mimes ventriloquists detectives spies astronauts explorers sailors lumberjacks shepherds farmers
fishermen blacksmiths potters tailors cobblers bakers butchers chefs waiters doctors nurses
teachers librarians scientists inventors engineers architects artists musicians poets novelists
actors dancers athletes referees firefighters lifeguards mysteries thrillers westerns romances
fables legends myths sagas epics sonnets haikus limericks comedies tragedies documentaries
cartoons animations sitcoms soaps quizzes backpacks suitcases briefcases wallets purses handbags
baskets buckets barrels crates boxes envelopes parcels tickets passports badges medals trophies
certificates diplomas
"""
#: The 1,392 things the people of :func:`limit_dataset` like: distinct words, one token each for
#: :func:`minilib.text.tokenize`.
ATTRIBUTES = tuple(_ATTRIBUTE_WORDS.split())

# Made-up names from syllables, so that no name is a word a query could ask about.
_ONSETS = ("b", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr", "tr",
           "kl", "st", "sh", "ch")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou", "ia")
_CODAS = ("", "", "n", "r", "l", "s", "m", "th", "rd", "x")


def _name(rng: np.random.Generator, syllables: int) -> str:
    parts = [_ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))] for _ in range(syllables)]
    return ("".join(parts) + _CODAS[rng.integers(len(_CODAS))]).capitalize()


def _names(count: int, rng: np.random.Generator, banned: set[str]) -> list[str]:
    """``count`` distinct "First Last" names whose words are not in ``banned``."""
    out, seen = [], set()
    while len(out) < count:
        first, last = _name(rng, 2), _name(rng, int(rng.integers(2, 4)))
        full = f"{first} {last}"
        if full in seen or first.lower() in banned or last.lower() in banned:
            continue
        seen.add(full)
        out.append(full)
    return out


def _likes(name: str, things) -> str:
    things = list(things)
    listed = things[0] if len(things) == 1 else ", ".join(things[:-1]) + " and " + things[-1]
    return f"{name} likes {listed}."


@dataclass
class LimitDataset:
    """A LIMIT-style collection made by :func:`limit_dataset`.

    ``docs`` (texts, "Zora Kelmar likes quokkas, violins and tea."), ``queries`` ("Who likes
    quokkas?"), ``qrels`` ``(n_queries, 2)`` int64 (the two relevant document ids of each query),
    ``core`` (ids of the core documents, whose every pair is some query's answer),
    ``query_attributes`` (the thing each query asks about) and ``doc_attributes`` (what each
    document lists).

    Defined in chapter 13.
    """

    docs: list
    queries: list
    qrels: np.ndarray
    core: np.ndarray
    query_attributes: list
    doc_attributes: list


def limit_dataset(n_core: int = 46, n_distractors: int = 1000, attributes_per_doc: int | None = None,
                  seed: int = 0) -> LimitDataset:
    """A LIMIT-style retrieval set (Weller et al. 2025), generated by code.

    ``n_core`` people form the core: for every pair of them there is one thing (from
    :data:`ATTRIBUTES`) that exactly those two like, and one query "Who likes <thing>?" whose two
    relevant documents are theirs: ``C(n_core, 2)`` queries, all top-2 subsets of the core.
    A core document therefore lists ``n_core - 1`` things. ``n_distractors`` more people like
    ``attributes_per_doc`` things each (default ``n_core - 1``, so that length gives nothing away)
    drawn from the things no query asks about. Documents are shuffled so that ids carry no hint.
    Names are made-up syllables. The same ``seed`` gives the same collection.

    Defined in chapter 13.
    """
    n_core = _check_int(n_core, "n_core", 3, "every pair of the core is a query; with 2 there is one")
    if isinstance(n_distractors, bool) or not isinstance(n_distractors, (int, np.integer)) or n_distractors < 0:
        raise ValueError(f"n_distractors must be an int >= 0, got {n_distractors!r}")
    per_doc = n_core - 1 if attributes_per_doc is None else _check_int(
        attributes_per_doc, "attributes_per_doc", 1, "things each distractor likes")
    n_pairs = n_core * (n_core - 1) // 2
    pool_size = len(ATTRIBUTES) - n_pairs
    if n_distractors and pool_size < per_doc:
        largest = max(k for k in range(3, 200) if k * (k - 1) // 2 + (k - 1) <= len(ATTRIBUTES))
        raise ValueError(f"n_core={n_core} needs {n_pairs} query things, leaving {max(pool_size, 0)} of the "
                         f"{len(ATTRIBUTES)} for distractors that like {per_doc} each: use n_core <= {largest} "
                         "or fewer attributes_per_doc")
    if pool_size < 0:
        largest = max(k for k in range(2, 200) if k * (k - 1) // 2 <= len(ATTRIBUTES))
        raise ValueError(f"n_core={n_core} needs {n_pairs} distinct things but ATTRIBUTES has {len(ATTRIBUTES)}: "
                         f"use n_core <= {largest}")
    rng = np.random.default_rng(seed)
    things = [ATTRIBUTES[i] for i in rng.permutation(len(ATTRIBUTES))]
    query_things, pool = things[:n_pairs], things[n_pairs:]

    n_docs = n_core + n_distractors
    names = _names(n_docs, rng, banned=set(ATTRIBUTES) | {"who", "likes", "and"})
    order = rng.permutation(n_docs)            # order[j] = document id of person j
    core = np.sort(order[:n_core])
    likes: list[list[str]] = [[] for _ in range(n_docs)]
    qrels = np.empty((n_pairs, 2), dtype=np.int64)
    for i, (a, b) in enumerate(itertools.combinations(range(n_core), 2)):
        da, db = order[a], order[b]
        likes[da].append(query_things[i])
        likes[db].append(query_things[i])
        qrels[i] = sorted((da, db))
    for j in range(n_core, n_docs):
        likes[order[j]] = [pool[t] for t in rng.choice(len(pool), per_doc, replace=False)]
    for j in range(n_docs):
        rng.shuffle(likes[j])                  # the order of the list gives nothing away either
    person = np.empty(n_docs, dtype=np.int64)
    person[order] = np.arange(n_docs)
    docs = [_likes(names[person[j]], likes[j]) for j in range(n_docs)]
    queries = [f"Who likes {t}?" for t in query_things]
    return LimitDataset(docs=docs, queries=queries, qrels=qrels, core=core,
                        query_attributes=query_things, doc_attributes=[tuple(x) for x in likes])


def recall(found_ids, qrels, k: int) -> float:
    """Recall@k against qrels: the share of each query's relevant documents among its first ``k``
    results, averaged over queries (LIMIT's metric). ``found_ids`` ``(m, >= k)`` as returned by any
    ``search``; ``qrels`` ``(m, r)`` relevant ids (``-1`` pads queries with fewer).

    It is :func:`minilib.index.recall_at_k` with the relevant ids as the "true" ones.

    Defined in chapter 13.
    """
    from .index import recall_at_k

    found = np.asarray(found_ids)
    q = np.asarray(qrels)
    if q.ndim != 2 or found.ndim != 2 or len(q) != len(found):
        raise ValueError(f"found_ids (m, k) and qrels (m, r) need the same number of rows, got shapes "
                         f"{found.shape} and {q.shape}")
    k = _check_int(k, "k", 1, "results looked at")
    if found.shape[1] < k:
        raise ValueError(f"found_ids has {found.shape[1]} columns, fewer than k={k}: search with a larger k")
    if q.shape[1] > k:  # recall_at_k looks at k "true" ids: every relevant one must fit
        raise ValueError(f"queries have {q.shape[1]} relevant documents but k={k}: use k >= {q.shape[1]}")
    true = np.full((len(q), k), -1, dtype=np.int64)   # the relevant ids, padded with -1 ("none")
    true[:, :q.shape[1]] = q
    return recall_at_k(found[:, :k], true, k)


# --- 6. many vectors per text: late interaction ----------------------------------------------------


def maxsim(q, d, q_mask=None, d_mask=None) -> torch.Tensor:
    """ColBERT's late-interaction score of every query against every document, ``(nq, nd)``.

    ``q`` ``(nq, Tq, dim)`` query token vectors, ``d`` ``(nd, Td, dim)`` document token vectors,
    with optional boolean masks ``(nq, Tq)``, ``(nd, Td)`` (True = a real token). For each query
    token take its best dot product over the document's tokens, then sum over query tokens:
    ``score(q, d) = sum_i max_j <q_i, d_j>``. A document with no real token scores ``-inf``.
    Memory is ``nq x nd x Tq x Td``: this is the readable version, :class:`MultiVector` the batched one.

    Defined in chapter 13.
    """
    q, d = torch.as_tensor(q), torch.as_tensor(d)
    if q.dim() != 3 or d.dim() != 3 or q.shape[-1] != d.shape[-1]:
        raise ValueError(f"maxsim expects q (nq, Tq, dim) and d (nd, Td, dim) with the same dim, got "
                         f"{tuple(q.shape)} and {tuple(d.shape)} (for one text add a leading axis: x[None])")
    q_mask = torch.ones(q.shape[:2], dtype=torch.bool) if q_mask is None else torch.as_tensor(q_mask).bool()
    d_mask = torch.ones(d.shape[:2], dtype=torch.bool) if d_mask is None else torch.as_tensor(d_mask).bool()
    if q_mask.shape != q.shape[:2] or d_mask.shape != d.shape[:2]:
        raise ValueError(f"masks must be (nq, Tq) = {tuple(q.shape[:2])} and (nd, Td) = {tuple(d.shape[:2])}, "
                         f"got {tuple(q_mask.shape)} and {tuple(d_mask.shape)}")
    S = torch.einsum("aid,bjd->abij", q, d.to(q.dtype))                  # (nq, nd, Tq, Td) token-pair dots
    S = S.masked_fill(~d_mask.to(S.device)[None, :, None, :], -math.inf)
    best = S.max(dim=-1).values                                           # (nq, nd, Tq) best doc token each
    best = best.masked_fill(~q_mask.to(S.device)[:, None, :], 0.0)        # padding query tokens add nothing
    return best.sum(dim=-1)


class MultiVector:
    """Late-interaction retrieval with a frozen encoder: every token of a text keeps its vector.

    ``MultiVector(model, tokenizer)`` takes chapter 06's :class:`~minilib.transformer.Transformer`
    and a tokenizer with ``encode_batch`` (default: all-MiniLM-L6-v2 and its WordPiece, no
    training). ``add(texts)`` stores each document's token vectors, unit length, dropping
    ``[CLS]``, ``[SEP]``, padding and punctuation-only tokens, as ColBERT drops punctuation (the
    boolean ``dropped`` over the vocabulary marks those ids; a text with nothing else keeps all its
    tokens). ``search(queries, k) -> (scores (nq, k), ids (nq, k))`` is exact MaxSim over all
    stored documents, in chunks. The same forward pass also gives the single-vector embedding
    (mean of *all* token vectors, then unit length, as sentence-transformers does): ``pooled``
    ``(n, dim)``, so dense and multi-vector retrieval are compared on identical token states.

    Defined in chapter 13.
    """

    def __init__(self, model=None, tokenizer=None, *, max_len: int = 256, batch_size: int = 32,
                 device: str | torch.device | None = None, doc_chunk: int = 1024, query_batch: int = 32):
        if model is None:
            from .transformer import load_minilm

            model = load_minilm()
        if tokenizer is None:
            from . import data
            from .bpe import WordPiece

            tokenizer = WordPiece.from_vocab(data.load("minilm") / "vocab.txt")
        if not hasattr(tokenizer, "encode_batch"):
            raise TypeError("tokenizer needs an encode_batch(texts, max_len=..., truncate=True) method")
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model, self.tokenizer = model.to(self.device).eval(), tokenizer
        self.max_len, self.batch_size = max_len, batch_size
        self.doc_chunk, self.query_batch = doc_chunk, query_batch
        self.dim = model.config.d_model
        self.dropped = self._drop_table()   # (vocab,) bool: ids whose vectors are not kept
        self.tokens = torch.empty(0, self.dim, device=self.device)      # (total kept tokens, dim)
        self.offsets = [0]                                               # doc j owns tokens[offsets[j]:offsets[j+1]]
        self.pooled = np.zeros((0, self.dim), dtype=np.float32)          # (n, dim) single-vector embeddings

    def _drop_table(self) -> torch.Tensor:
        """Boolean over the vocabulary: True for the ids whose vectors we do not keep."""
        import unicodedata

        itos = getattr(self.tokenizer, "itos", None)
        size = len(itos) if itos is not None else int(self.model.config.vocab_size)
        drop = torch.zeros(size, dtype=torch.bool)
        for name in ("pad_id", "cls_id", "sep_id"):
            i = getattr(self.tokenizer, name, None)
            if i is not None:
                drop[i] = True
        if itos is not None:
            for i, tok in enumerate(itos):
                piece = tok[2:] if tok.startswith("##") else tok
                if piece and all(unicodedata.category(c).startswith("P") for c in piece):
                    drop[i] = True
        return drop.to(self.device)

    @property
    def ntotal(self) -> int:
        """The number of documents stored so far by :meth:`add`."""
        return len(self.offsets) - 1

    @torch.no_grad()
    def encode(self, texts) -> tuple[list[torch.Tensor], np.ndarray]:
        """Token vectors of each text (a list of ``(T_i, dim)`` unit-row tensors, kept tokens only) and
        the texts' single-vector embeddings ``(n, dim)`` (mean over all tokens, unit length)."""
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts, got one str: wrap it, [text]")
        texts = list(texts)
        if not texts:
            raise ValueError("no texts given: pass at least one")
        per_text, pooled = [], []
        for s in range(0, len(texts), self.batch_size):
            ids, mask = self.tokenizer.encode_batch(texts[s:s + self.batch_size], max_len=self.max_len, truncate=True)
            ids, mask = ids.to(self.device), mask.to(self.device)
            H = self.model(ids, attention_mask=mask)                            # (b, T, dim)
            m = mask.unsqueeze(-1).to(H.dtype)
            pooled.append(F.normalize((H * m).sum(1) / m.sum(1).clamp_min(1), dim=-1).float().cpu())
            H = F.normalize(H.float(), dim=-1)
            keep = mask.bool() & ~self.dropped[ids]                               # (b, T)
            for r in range(len(ids)):
                row = keep[r] if keep[r].any() else mask[r].bool()
                per_text.append(H[r][row])
        return per_text, torch.cat(pooled).numpy()

    def add(self, texts) -> "MultiVector":
        """Encode and store documents; ids continue from :attr:`ntotal`."""
        vecs, pooled = self.encode(texts)
        self.tokens = torch.cat([self.tokens, *vecs])
        for v in vecs:
            self.offsets.append(self.offsets[-1] + len(v))
        self.pooled = np.concatenate([self.pooled, pooled])
        return self

    def _pad(self, vecs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        T = max(len(v) for v in vecs)
        out = torch.zeros(len(vecs), T, self.dim, device=self.device)
        mask = torch.zeros(len(vecs), T, dtype=torch.bool, device=self.device)
        for i, v in enumerate(vecs):
            out[i, :len(v)], mask[i, :len(v)] = v, True
        return out, mask

    @torch.no_grad()
    def scores(self, queries) -> np.ndarray:
        """MaxSim of every query against every stored document: ``(nq, ntotal)`` float32.

        ``queries`` are texts, or the token vectors :meth:`encode` returned for them (to encode once
        and reuse the pooled vectors for dense search)."""
        if self.ntotal == 0:
            raise ValueError("the index is empty: add(documents) first")
        encoded = isinstance(queries, (list, tuple)) and len(queries) > 0 and all(
            isinstance(v, torch.Tensor) for v in queries)
        if encoded and any(v.dim() != 2 or v.shape[1] != self.dim or len(v) == 0 for v in queries):
            raise ValueError(f"encoded queries must be non-empty (T, {self.dim}) tensors, as encode() returns")
        qv = [v.to(self.device) for v in queries] if encoded else self.encode(queries)[0]
        offsets = torch.tensor(self.offsets, device=self.device)
        out = []
        for qs in range(0, len(qv), self.query_batch):
            Qp, qmask = self._pad(qv[qs:qs + self.query_batch])                 # (b, Tq, dim), (b, Tq)
            rows = []
            for ds in range(0, self.ntotal, self.doc_chunk):
                de = min(ds + self.doc_chunk, self.ntotal)
                lo, hi = self.offsets[ds], self.offsets[de]
                lens = offsets[ds + 1:de + 1] - offsets[ds:de]                  # (c,) tokens per document
                T = int(lens.max())
                # Positions of each document's tokens in this chunk, padding pointing at a -inf column.
                pos = torch.arange(T, device=self.device)[None, :]
                idx = torch.where(pos < lens[:, None], offsets[ds:de, None] - lo + pos, hi - lo)  # (c, T)
                S = Qp.reshape(-1, self.dim) @ self.tokens[lo:hi].T                # (b Tq, chunk tokens)
                S = torch.cat([S, torch.full((len(S), 1), -math.inf, device=self.device)], dim=1)
                best = S[:, idx].amax(-1).reshape(len(Qp), -1, de - ds)         # (b, Tq, c)
                rows.append((best * qmask[:, :, None]).sum(1))                  # (b, c)
            out.append(torch.cat(rows, dim=1).cpu())
        return torch.cat(out).numpy()

    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` documents with the highest MaxSim per query: ``(scores, ids)``, both ``(nq, k)``,
        best first, ties by the smaller id. ``k`` larger than :attr:`ntotal` pads with id ``-1``
        and score ``-inf``."""
        k = _check_int(k, "k", 1, "results per query")
        return _top_k(self.scores(queries), k)


def _top_k(S: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns of each row of ``S`` ``(m, n)``, highest first, ties by the smaller column."""
    m, n = S.shape
    kk = min(k, n)
    ids = np.argsort(-S, axis=1, kind="stable")[:, :kk]
    vals = np.take_along_axis(S, ids, axis=1)
    if kk < k:
        ids = np.concatenate([ids, np.full((m, k - kk), -1)], axis=1)
        vals = np.concatenate([vals, np.full((m, k - kk), -np.inf)], axis=1)
    return vals.astype(np.float32), ids.astype(np.int64)
