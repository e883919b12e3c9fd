"""What a backbone family is: its names, its loading, its blocks, its keywords — and the one registry of them.

A family answers every question a tool asks about its networks (as a timm model owns ``group_matcher`` and
``forward_intermediates``), so :func:`~llmvem.vision.backbones.load_backbone` and
:func:`~llmvem.vision.trainable.split_backbone` ask the family instead of knowing each one.

Example
-------
>>> from llmvem.vision.families import FAMILIES
>>> family, ref = FAMILIES.resolve("timm:resnet18")
>>> family.name, ref
('timm', 'resnet18')
>>> FAMILIES.resolve("efficientnet_lite1")[0].name
'efficientnet_lite'
>>> "hf_clip:openai/clip-vit-base-patch32" in FAMILIES, "resnet18" in FAMILIES
(True, False)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from llmvem.errors import BackendError, ConfigError, RegistryError, short_repr
from llmvem.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from llmvem.vision.backbone import Backbone


@dataclass(frozen=True)
class Blocks:
    """A network's block structure, for cutting it into a frozen bottom and a trainable top.

    Attributes:
        names: the blocks' module names in the backbone's module, in forward order (the stem comes before the
            first, the head after the last): a tap of ``names[i]`` is block ``i``'s output. They are what
            ``layers="all"`` taps (:meth:`BackboneFamily.block_layers`).
        cut: ``cut(k)`` → ``(bottom, top)``: bottom = stem + the first ``k`` blocks (``nn.Identity`` when
            ``k == 0``: the images themselves), top = the remaining blocks + head. ``top(bottom(x))`` equals the
            backbone's pooled features (B, D).
        what: what one block is, for messages ("the 16 MBConv blocks _blocks.*").
    """

    names: tuple[str, ...]
    cut: Callable[[int], tuple[nn.Module, nn.Module]]
    what: str

    @property
    def count(self) -> int:
        """Number of blocks."""
        return len(self.names)

    def split_at(self, k: int, name: str) -> tuple[nn.Module, nn.Module]:
        """``cut(k)`` after checking ``0 <= k <= count``.

        Raises:
            ConfigError: ``k`` outside the valid range (the message names the count and the range).
        """
        if not 0 <= k <= self.count:
            raise ConfigError(
                f"backbone {name!r} cannot be split after block {k}: it has {self.count} blocks ({self.what}); "
                f"the frozen bottom holds 0 to {self.count} of them"
            )
        return self.cut(k)


def sequential_blocks(
    stem: nn.Module, units: Sequence[nn.Module], head: nn.Module, what: str, names: Sequence[str]
) -> Blocks:
    """:class:`Blocks` of a network that runs ``stem``, then ``units`` in order, then ``head``; ``names[i]`` is the
    module whose output is ``units[i]``'s (see :func:`module_names`)."""
    if len(names) != len(units):
        raise ValueError(f"{len(units)} blocks but {len(names)} block names")

    def cut(k: int) -> tuple[nn.Module, nn.Module]:
        from torch import nn

        if k == 0:
            return nn.Identity(), nn.Sequential(stem, *units, head)
        return nn.Sequential(stem, *units[:k]), nn.Sequential(*units[k:], head)

    return Blocks(tuple(names), cut, what)


def module_names(root: nn.Module, modules: Iterable[nn.Module]) -> list[str]:
    """The names of ``modules`` (submodules of ``root``, found by identity) as in ``root.named_modules()``.

    Raises:
        ValueError: a module that is not inside ``root``.
    """
    by_id = {id(m): n for n, m in root.named_modules()}
    missing = [type(m).__name__ for m in modules if id(m) not in by_id]
    if missing:
        raise ValueError(f"modules {missing} are not inside {type(root).__name__}")
    return [by_id[id(m)] for m in modules]


def structural_blocks(root: nn.Module) -> list[str]:
    """Blocks found from the module tree alone, for a network its family cannot split: every composite child (one
    with submodules of its own, not itself a container) of a ``nn.Sequential`` / ``nn.ModuleList`` that is not
    inside another such block (the ``blocks.S.B`` of a timm EfficientNet, the ``layerS.B`` of a ResNet).
    Containers of leaf modules (a ``downsample`` conv + norm) hold no blocks. ``[]`` when there are none."""
    from torch import nn

    containers = (nn.Sequential, nn.ModuleList)
    chosen: list[str] = []
    for name, mod in root.named_modules():
        if not isinstance(mod, containers) or any(name == c or name.startswith(c + ".") for c in chosen):
            continue
        kids = list(mod.named_children())
        if kids and all(any(True for _ in k.children()) and not isinstance(k, containers) for _, k in kids):
            chosen += [f"{name}.{n}" if name else n for n, _ in kids]
    return chosen


class BackboneFamily:
    """One family of backbones: how its names read, how it loads, how it splits.

    Subclasses set the class attributes and implement :meth:`load` and :meth:`blocks`; a module per family
    registers an instance with ``FAMILIES.register(name)``.

    Attributes:
        name: the family's registry name (``"timm"``).
        names: exact backbone names of the family (``("efficientnet_lite0", ...)``).
        prefixes: reference prefixes (``("timm:",)``): ``"timm:resnet18"`` is ``resnet18`` for this family.
        syntax: how its backbones are named, for messages (``("timm:<architecture>",)``), the main form first.
        keywords: keyword arguments :meth:`load` accepts besides ``device`` and ``pooling``.
        poolings: the ``pooling=`` values :meth:`load` accepts (``None``, the default, always).
        layer_aliases: ``{old prefix: new prefix}`` of alternative layer names (rewritten before tapping).
        splits: what :meth:`blocks` supports, for messages and docs.
    """

    name: str = ""
    names: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    syntax: tuple[str, ...] = ()
    keywords: frozenset[str] = frozenset()
    poolings: tuple[str, ...] = ("avg", "cls", "max")
    layer_aliases: ClassVar[dict[str, str]] = {}
    splits: str = ""

    def parse(self, name: str) -> str | None:
        """The family's reference in ``name`` (``"timm:resnet18"`` → ``"resnet18"``), or ``None`` if not its own."""
        if name in self.names:
            return name
        for prefix in self.prefixes:
            if name.startswith(prefix):
                return name[len(prefix) :].strip()
        return None

    def load(self, ref: str, *args: Any, **kwargs: Any) -> Backbone:
        """The backbone ``ref`` (as returned by :meth:`parse`): called with keywords ``device``, ``pooling``
        (``None``: the family's default) and the family's :attr:`keywords`."""
        raise NotImplementedError

    def blocks(self, backbone: Backbone) -> Blocks:
        """The block structure of ``backbone``'s module (its parameters shared, not copied).

        Raises:
            ConfigError: a network of the family that cannot be split.
        """
        raise ConfigError(f"backbone {backbone.name!r} (family {self.name}) cannot be split into blocks")

    def block_layers(self, backbone: Backbone) -> list[str]:
        """What ``layers="all"`` taps: the module names of :meth:`blocks` (the blocks ``split_backbone`` cuts
        between), or, for a network the family cannot split, :func:`structural_blocks` of its module.

        Raises:
            BackendError: neither gives a block (name the layers instead).
        """
        try:
            return list(self.blocks(backbone).names)
        except ConfigError:
            found = structural_blocks(backbone.module)
        if not found:
            raise BackendError(
                f"backbone {backbone.name!r} has no sequence of blocks to tap as 'all'; name the layers "
                "(see llmvem.vision.layer_names(backbone))"
            )
        return found

    def __repr__(self) -> str:
        return f"<backbone family {self.name}: {', '.join(self.syntax)}>"


class FamilyRegistry(Registry[BackboneFamily]):
    """The registry of backbone families, which also resolves backbone names to (family, reference)."""

    def resolve(self, name: str) -> tuple[BackboneFamily, str]:
        """The family owning ``name`` and its reference (the part after the prefix).

        Raises:
            RegistryError: no family owns ``name`` (the message lists every family's syntax).
        """
        for family in self._items.values():
            ref = family.parse(name)
            if ref is not None:
                return family, ref
        raise RegistryError(f"unknown vision backbone {short_repr(name)}; known: {self.syntaxes()}")

    def syntaxes(self) -> str:
        """How backbones are named, for messages: each family's main form in registration order, then the rest."""
        families = list(self._items.values())
        forms = [f.syntax[0] for f in families if f.syntax] + [s for f in families for s in f.syntax[1:]]
        return ", ".join(forms)

    def keyword_error(self, name: str, keywords: Iterable[str]) -> str | None:
        """A message naming the keywords in ``keywords`` that backbone ``name``'s family does not accept, or
        ``None`` when it accepts them all (or no family owns ``name``: that error comes when it loads)."""
        try:
            family, _ = self.resolve(name)
        except RegistryError:
            return None
        bad = sorted(set(keywords) - family.keywords)
        if not bad:
            return None
        accepted = ", ".join(sorted(family.keywords)) or "none"
        if bad == ["model_kwargs"]:  # the one a config can carry over from a timm backbone
            takers = ", ".join(f.syntax[0] for f in self._items.values() if "model_kwargs" in f.keywords)
            return (
                f"model_kwargs are model-constructor keywords: backbone {name!r} takes none "
                f"(backbones that do: {takers}; or remove model_kwargs)"
            )
        return f"backbone {name!r} takes no keyword {', '.join(bad)} (family {family.name} accepts: {accepted})"

    def __contains__(self, name: object) -> bool:
        """True for a family name and for any backbone name a family owns (``"timm:resnet18"``)."""
        if not isinstance(name, str):
            return False
        if name in self._items:
            return True
        return any(f.parse(name) is not None for f in self._items.values())


FAMILIES = FamilyRegistry("backbone family")
