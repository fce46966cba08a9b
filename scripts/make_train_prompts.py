"""Write the training prompts for the bundled adapters: templates x topics, deduplicated against held-out.

Every prompt is an everyday question built from a question template and a topic (or a how-to task).
A prompt is dropped when it duplicates a held-out prompt (the same words, or most of the same content
words), so no held-out prompt is trained on. The order is shuffled with a fixed seed, so the file is
the same on every run.

    .venv/bin/python scripts/make_train_prompts.py [--heldout data/prompts/heldout.jsonl] \
        [--out data/prompts/train.jsonl] [--count 2000]
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

TOPICS = """bees|volcanoes|the Moon|rainforests|penguins|chocolate|jazz music|the Roman Empire|bicycles|coffee|
tea|sharks|deserts|the human brain|electricity|gravity|dinosaurs|the ocean|clouds|snow|trains|bridges|
libraries|museums|the internet|smartphones|robots|gardening|baking bread|knitting|painting|photography|
yoga|running|swimming|cycling|chess|soccer|basketball|tennis|the piano|the violin|drums|poetry|novels|
comic books|board games|video games|camping|hiking|fishing|bird watching|astronomy|the Sun|Mars|Jupiter|
comets|the Milky Way|earthquakes|tornadoes|rain|lightning|rivers|mountains|islands|glaciers|caves|
forests|wolves|elephants|giraffes|owls|dolphins|butterflies|ants|spiders|frogs|turtles|horses|rabbits|
parrots|honey|cheese|pizza|pasta|rice|apples|bananas|oranges|tomatoes|potatoes|soup|salad|ice cream|
pancakes|sushi|spices|vegetables|vitamins|sleep|exercise|meditation|friendship|kindness|patience|
teamwork|leadership|public speaking|writing letters|keeping a diary|learning languages|mathematics|
fractions|geometry|history|geography|maps|compasses|clocks|calendars|money|banks|budgeting|recycling|
composting|solar power|wind turbines|electric cars|airplanes|ships|submarines|rockets|satellites|
telescopes|microscopes|vaccines|hospitals|nurses|firefighters|farmers|teachers|architects|chefs|
pilots|scientists|engineers|artists|musicians|castles|pyramids|lighthouses|windmills|gardens|parks|
zoos|aquariums|festivals|birthdays|weddings|holidays|picnics|road trips|train travel|hotels|airports|
markets|bakeries|restaurants|recipes|kitchens|furniture|houseplants|cats|dogs|hamsters|goldfish|
pet birds|puppies|kittens|bread|cookies|cakes|fruit salad|smoothies|lemonade|water|salt|sugar|
glass|paper|wood|metal|plastic|cotton|wool|silk|colors|shapes|numbers|music lessons|dance|theater|
movies|cartoons|fairy tales|myths|legends|riddles|jokes|puzzles|crosswords|origami|pottery|
sculpture|quilting|woodworking|sewing|cooking with kids|school lunches|homework|exams|graduation|
first jobs|interviews|resumes|emails|text messages|handwriting|typing|keyboards|computers|
spreadsheets|passwords|online safety|social media|newspapers|radio|podcasts|television|cameras|
light bulbs|batteries|magnets|rainbows|sunsets|the seasons|spring|summer|autumn|winter|the weather""".replace("\n", "")

TOPIC_TEMPLATES = [
    "What is interesting about {t}?", "Tell me about {t}.", "Explain {t} in simple terms.",
    "Why do people like {t}?", "Give me three facts about {t}.", "How would you describe {t} to a child?",
    "What should a beginner know about {t}?", "What are some common myths about {t}?",
    "Write a short paragraph about {t}.", "What do you think about {t}?",
    "What is the most surprising thing about {t}?", "Why are {t} important?",
]

TASKS = """bake a loaf of bread|plant a tree|learn to juggle|make a paper airplane|start running|
save money for a trip|clean my room quickly|wake up earlier|write a poem|make a smoothie|care for a cactus|
paint a wall|organize my desk|study for a math test|learn to whistle|make a good cup of tea|
fold a shirt neatly|tie a tie|make a budget|write a cover letter|speak more confidently|make friends at work|
cook pasta|make a salad dressing|grow tomatoes|train a puppy to sit|wash a car|change a light bulb|
pack a suitcase|plan a birthday party|learn to draw|start a journal|stay focused while reading|
make a snowman|build a sandcastle|set up a fish tank|read a map|use a compass|make lemonade|
ride a bike safely|swim faster|stretch after exercise|relax before bed|apologize to a friend|
give a short speech|remember names|keep my plants watered|clean windows|fix a flat bike tire|
make homemade pizza|host a game night|write a thank-you card|learn to type faster|cut onions|
make scrambled eggs|brew coffee at home|keep a conversation going|choose a gift for a friend|
decorate a small room|start learning the piano|take care of my teeth|protect my skin from the sun|
make a grocery list|eat more vegetables|stay cool in hot weather|stay warm in winter|make a kite|
teach my dog a trick|start a book club|volunteer in my town|welcome a new neighbor|plan a garden|
practice mindfulness|write a short story|learn a new recipe|sharpen a kitchen knife|make a sandwich|
bake cookies|decorate a cake|sew on a button|iron a shirt|recycle old clothes|reduce food waste|
make a paper boat|grow herbs indoors|care for a rabbit|choose running shoes|start a podcast|
take notes in class|prepare a presentation|write a clear email|make my bed every day|wash dishes faster""".replace("\n", "")

TASK_TEMPLATES = [
    "How do I {t}?", "What is the easiest way to {t}?", "Give me some tips to {t}.",
    "What do I need to {t}?", "Can you explain how to {t}?", "What mistakes should I avoid when I {t}?",
]

STOP = set("a an the do i to of in is what how why my me you your for and or can some are on at with "
           "about should so it be that this".split())


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def content(text: str) -> frozenset[str]:
    return frozenset(w for w in words(text) if w not in STOP)


def near_duplicate(prompt: str, heldout: list[tuple[str, frozenset[str]]], threshold: float) -> bool:
    """The same words as a held-out prompt, or content-word Jaccard overlap at or above `threshold`."""
    plain, mine = " ".join(words(prompt)), content(prompt)
    for other_plain, other in heldout:
        if plain == other_plain:
            return True
        union = mine | other
        if union and len(mine & other) / len(union) >= threshold:
            return True
    return False


def build(heldout_prompts: list[str], count: int, *, seed: int = 0, threshold: float = 0.34) -> list[str]:
    candidates = [t.format(t=topic) for topic in TOPICS.split("|") for t in TOPIC_TEMPLATES]
    candidates += [t.format(t=task) for task in TASKS.split("|") for t in TASK_TEMPLATES]
    candidates = list(dict.fromkeys(candidates))
    heldout = [(" ".join(words(p)), content(p)) for p in heldout_prompts]
    kept = [p for p in candidates if not near_duplicate(p, heldout, threshold)]
    random.Random(seed).shuffle(kept)
    return kept[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heldout", default="data/prompts/heldout.jsonl")
    parser.add_argument("--out", default="data/prompts/train.jsonl")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    heldout = [json.loads(line)["prompt"] for line in Path(args.heldout).read_text().splitlines() if line.strip()]
    prompts = build(heldout, args.count, seed=args.seed)
    Path(args.out).write_text("".join(json.dumps({"id": f"train-{i:04d}", "prompt": p}) + "\n"
                                      for i, p in enumerate(prompts, start=1)))
    print(f"wrote {len(prompts)} training prompts to {args.out} (checked against {len(heldout)} held-out prompts)")


if __name__ == "__main__":
    main()
