"""A verifiable reward for the PPO learning tests: the share of response words that are numbers.

About 13% of the tiny model's vocabulary decodes to a number, so a random policy scores about
0.1 and a policy that learned to answer in numbers scores close to 1.
"""


def digit_share(contexts: list, responses: list[str]) -> list[float]:
    scores = []
    for response in responses:
        words = response.split()
        scores.append(sum(word.isdigit() for word in words) / len(words) if words else 0.0)
    return scores
