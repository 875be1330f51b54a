"""What an infer.py run says: a line for each file that failed or needs a word, when it happens, and a last line
counting what was done, skipped and lost."""
import sys

from tqdm import tqdm


def say(line):
    """One line on stderr, above the progress bar."""
    tqdm.write(line, file=sys.stderr)


def _count(number, what):
    return f'{number} {what}' if number == 1 else f'{number} {what}s'


class Report:
    """Counts of a run's inputs by outcome. `unit` names an input: 'photo' or 'face'."""

    def __init__(self, unit, inputs=0):
        self.unit = unit
        self.inputs = inputs
        self.restored = 0
        self.faces = 0
        self.without_face = 0
        self.damaged = 0
        self.failed = 0
        self.skipped = []  # what each input that is not a file was: 'folder', 'hidden file', ...

    def error(self, message):
        """An input that gave no results."""
        self.failed += 1
        say(f'error: {message}')

    def restored_one(self, faces=1, damaged=False):
        self.restored += 1
        self.faces += faces
        self.without_face += faces == 0
        self.damaged += damaged

    def skip(self, what, line=None):
        self.skipped.append(what)
        if line:
            say(f'note: {line}')

    def last_line(self, output, interrupted=False):
        details = []
        if self.unit == 'photo':
            details.append(_count(self.faces, 'face'))
            if self.without_face:
                details.append(f'{_count(self.without_face, "photo")} with no face found')
        if self.damaged:
            details.append(f'{_count(self.damaged, "damaged file")} restored as far as it decodes')
        done = f'restored {self.restored} of {_count(self.inputs, self.unit)} into {output}'
        parts = [done + (f' ({", ".join(details)})' if details else '')]
        if self.failed:
            parts.append(f'{self.failed} failed')
        if interrupted:
            parts.append(f'{self.inputs - self.restored - self.failed} not done: interrupted')
        if self.skipped:
            kinds = sorted(set(self.skipped))
            parts.append('skipped ' + ', '.join(_count(self.skipped.count(kind), kind) for kind in kinds))
        return '; '.join(parts)

    def exit_code(self, interrupted=False):
        return 130 if interrupted else 1 if self.failed else 0
