"""all_to_center: push every block to the center of the board."""

from __future__ import annotations

from envs.tasks.base import register_task
from envs.tasks.push.base import NoArgGoal, PushTask, location_pushes
from envs.tasks.push.geometry import in_location


@register_task
class AllToCenter(PushTask):
    name = "all_to_center"
    templates = (
        "push all the blocks to the center",
        "move all the blocks to the middle of the board",
        "put every block in the center of the board",
        "slide all the blocks to the center",
        "gather all the blocks in the middle",
    )
    heldout_templates = (
        "bring every block to the middle of the board",
        "clear the edges by pushing all the blocks into the center",
    )
    success_doc = (
        "every block is within 0.1 m of the board's center point (block2absolutelocation's center test)"
    )

    def draw_goal(self, rng, objects, xy):
        return NoArgGoal("center")

    def goal_from_slots(self, template, slots, objects):
        return NoArgGoal("center")

    def is_success(self, env, goal):
        return all(in_location(q, "center") for q in env.blocks_xy())

    def oracle_plan(self, env, goal):
        if self.is_success(env, goal):
            return []
        n = len(env.object_ids)
        return location_pushes(env, range(n), dict.fromkeys(range(n), "center"))
