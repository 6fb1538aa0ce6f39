from django import forms

from pairing.codes import DESKTOP_LENGTH


class PairCodeForm(forms.Form):
    code = forms.CharField(
        label="Pairing code",
        max_length=20,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "off",
                "autocapitalize": "characters",
                "spellcheck": "false",
                "maxlength": DESKTOP_LENGTH,
                "pattern": "[A-Za-z0-9]{6}",
                "inputmode": "text",
                "class": "pair-code",
                "autofocus": True,
                "data-pair-code": "",
            }
        ),
        help_text="The 6 characters your Island shows in its terminal, e.g. A3X9K2.",
    )


class RenameIslandForm(forms.Form):
    name = forms.CharField(label="Name", max_length=100, min_length=1, strip=True)
