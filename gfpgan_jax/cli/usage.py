"""Usage errors of the command-line tools on one line, and argument types that check their range when parsed."""
import argparse


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, but a usage error is a single `error: ...` line (exit status 2), not a usage block."""

    def error(self, message):
        self.exit(2, f'error: {message} (see {self.prog} --help)\n')


def whole_number(minimum=None, maximum=None):
    """An argument type: an int within [minimum, maximum]."""
    def parse_number(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected a whole number, got {text!r}') from None
        if minimum is not None and value < minimum or maximum is not None and value > maximum:
            bounds = (f'at least {minimum}' if maximum is None else f'at most {maximum}' if minimum is None
                      else f'between {minimum} and {maximum}')
            raise argparse.ArgumentTypeError(f'must be {bounds}, got {value}')
        return value
    return parse_number


def file_name_part(text):
    """An argument type for text that goes into output file names (a suffix): no folder separators in it."""
    if '/' in text or '\\' in text or '\0' in text:
        raise argparse.ArgumentTypeError(f'must not contain / or \\ (it is part of file names), got {text!r}')
    return text


def fraction(text):
    """An argument type: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a number from 0 to 1, got {text!r}') from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f'must be from 0 to 1, got {text}')
    return value
