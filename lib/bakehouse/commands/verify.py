"""`doit verify [BAKE ...]`: prove that local images are what their inputs make (verify.py).

Each named bake (all local bakes when none is named) is baked again, with what it builds on,
in a scratch repository; each image is compared with the bake's current image:
`hello: reproducible (sha256:...)`, or `hello: NOT reproducible` and the files that differ.
Exit status: 0 every image reproducible, 1 one is not, 2 one cannot be verified (an input can
no longer be had, or there is no current image to compare with).
"""

from __future__ import annotations

import sys

from ..errors import BakehouseError
from ..tasks import new_planner, planner_from_tasks
from ..verify import verify
from . import Command
from .plan import selected

EXIT_SAME, EXIT_DIFFERENT, EXIT_CANNOT = 0, 1, 2


class VerifyCommand(Command):
    """The `doit verify` command, registered through the `doit.COMMAND` entry point."""

    exit_codes = ((0, "every image reproducible (or nothing to verify)"), (1, "an image is not reproducible"),
                  (2, "an image cannot be verified: no image of its inputs, or an input gone"), (3, "a bad option"))

    name = "verify"
    doc_purpose = "bake local images again in a scratch repository and compare their bytes"
    doc_usage = "[BAKE ...]"
    doc_description = "Exit status: 0 reproducible, 1 not reproducible, 2 cannot be verified."

    def _execute(self, pos_args: list[str]) -> int:
        # The images of the current inputs, however old: freshness is not what is verified.
        planner = new_planner(planner_from_tasks(self.task_list).project.root, freshness=False)
        names = selected(planner.graph, pos_args or [])
        if not pos_args:
            names = [name for name in names if planner.graph[name].provider == "local"]
        # the last of each chain: a service's rebake bakes its base too
        leaves = [name for name in names if not any(planner.graph[other].base == name for other in names)]
        if not leaves:  # only local images are rebaked and compared
            self.outstream.write("nothing to verify: bakes/ has no local bakes (doit verify rebakes local images)\n")
            return EXIT_SAME
        codes, seen = [EXIT_SAME], set()
        say = lambda line: sys.stderr.write(line + "\n")  # noqa: E731 - progress goes to stderr
        for name in leaves:
            try:
                verdicts = verify(planner, name, say)
            except BakehouseError as error:
                self.outstream.write(f"{name}: cannot verify: {error}\n")
                codes.append(EXIT_CANNOT)
                continue
            for verdict in [v for v in verdicts if v.bake not in seen]:
                seen.add(verdict.bake)
                if verdict.reproducible:
                    self.outstream.write(f"{verdict.bake}: reproducible ({verdict.digest})\n")
                    continue
                self.outstream.write(f"{verdict.bake}: NOT reproducible: {verdict.image} is {verdict.digest}, "
                                     f"the rebake {verdict.rebaked}\n")
                self.outstream.write("".join(f"  {line}\n" for line in verdict.differences))
                codes.append(EXIT_DIFFERENT)
        return max(codes)  # cannot verify (2) outranks not reproducible (1)
