"""A prompt file split across processes, each on its own device, with Hugging Face accelerate:

    accelerate launch --multi_gpu --num_processes 2 -m invoke_shell --from_file prompts.txt

Every process reads every line, draws the same random seeds (from one base seed that the
first process sends to the others) and makes only its share of the images: each image goes to
the process that has made the fewest so far, and a line whose images go into one sheet (-g, a
sweep, a template) runs whole on one process, chosen the same way. The files go into the
shared outdir, whose numbers are claimed atomically, so the processes never collide; each
image equals what one process makes for the same seed. One invoke_log.md gets every line.
"""

from __future__ import annotations

import os
import random
import secrets
from dataclasses import dataclass, field

from invoke_shell.errors import UsageError


def launched_processes() -> int:
    """How many processes the launcher (accelerate launch / torchrun) started; 1 without one."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


@dataclass
class Share:
    rank: int
    world: int
    base_seed: int
    _load: list[int] = field(init=False)  # images given to each process so far
    _seeds: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._load = [0] * self.world
        self._seeds = random.Random(self.base_seed)

    def new_seed(self) -> int:
        """A random seed, the same in every process (each draws the same seeds in order)."""
        return self._seeds.randrange(2**32)

    def pick(self, images: int, whole: bool) -> list[int]:
        """Which of a line's images this process makes. Each image goes to the process with the
        fewest so far (the first of them on a tie); a line whose images make one sheet goes
        whole. Every process computes the same deal, so no image is made twice or missed."""
        owners = []
        for _ in range(1 if whole else images):
            owner = self._load.index(min(self._load))
            self._load[owner] += images if whole else 1
            owners.append(owner)
        if whole:
            return list(range(images)) if owners[0] == self.rank else []
        return [k for k, owner in enumerate(owners) if owner == self.rank]


def join(device: str) -> tuple[Share, str]:
    """This process's share of a launched run, and its device ("auto" becomes the launcher's:
    cuda:LOCAL_RANK on GPUs, the CPU otherwise)."""
    import torch
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    state = PartialState(cpu=device == "cpu" or not torch.cuda.is_available())
    base = [secrets.randbelow(2**63) if state.is_main_process else 0]
    broadcast_object_list(base)
    share = Share(state.process_index, state.num_processes, int(base[0]))
    return share, str(state.device) if device == "auto" else device


def leave() -> None:
    """End the process group, so that the launcher sees a clean exit."""
    from accelerate import PartialState

    PartialState().destroy_process_group()


def refuse_recall(what: str) -> UsageError:
    return UsageError(
        f"{what} recalls an image of this session, but the images of a prompt file run by several "
        "processes are spread over them",
        "give the seed or the file itself (-S 42, -I path.png)",
    )
