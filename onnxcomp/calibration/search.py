"""Finding the fewest layers to return to float, without trying every count one by one.

The accuracy budget ranks quantized kernels by sensitivity and wants the *smallest* prefix of that
ranking whose return to float meets the budget. Trying prefixes of length 1, 2, 3, ... costs one
evaluation of the whole data set per step -- n evaluations on a model where many layers must go back.
Returning more layers to float can only bring the model closer to the float one (the property this
search relies on), so the prefix lengths that meet the budget form an upper interval: a galloping search
(1, 2, 4, 8, ...) brackets its start in ``log2(k)`` steps, and bisection inside the bracket finds it in
``log2(k)`` more. When the property does not hold exactly (noise in a metric), the answer is still a
length that meets the budget, and no shorter length inside the final bracket does.
"""

from __future__ import annotations

from collections.abc import Callable


def fewest_meeting(count: int, meets: Callable[[int], bool]) -> int | None:
    """The smallest ``k`` in ``1..count`` with ``meets(k)``, or None when even ``count`` fails.

    ``meets(0)`` is taken to be False (the caller has already measured the unmodified model). Each
    ``k`` is asked at most once, about ``2 * log2(answer)`` calls in all.
    """
    if count < 1:
        return None
    failing, k = 0, 1
    while not meets(k):
        failing = k
        if k >= count:
            return None
        k = min(2 * k, count)
    passing = k
    while passing - failing > 1:
        middle = (failing + passing) // 2
        if meets(middle):
            passing = middle
        else:
            failing = middle
    return passing
