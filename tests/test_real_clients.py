"""The monitor on the model classes of the libraries users train with: HF, torch_geometric, Lightning's demos.

Each test builds the client's own model class, trains it in a real ``Trainer`` with the monitor added as the README
says, and checks the monitor's last Δ_F against a direct sum F[v](k) = Σ_j v_j exp(−2πi k x_j) over the probe,
computed here from the model's own outputs (and, where it names the space, its own feature layer).
"""

import copy
import warnings

import lightning.pytorch as L
import numpy as np
import pytest
import torch

from fp_lightning import FrequencyPrincipleMonitor
from fp_lightning.functional import principal_projection
from fp_lightning.metrics import LowHighFrequencyError, ProjectedSpectralError
from tests.conftest import NO_FILES

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # real library models, end to end
TRAINER = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)


def direct_delta_f(features: torch.Tensor, y: np.ndarray, h: np.ndarray, freqs: list[int]) -> np.ndarray:
    """Δ_F(k) from the paper's formula: the first principal direction of ``features``, a direct Fourier sum."""
    coords = principal_projection(features.reshape(features.shape[0], -1).double()).coords[:, 0].numpy()
    phase = np.exp(-2j * np.pi * np.outer(freqs, coords))
    fy, fh = phase @ y, phase @ h
    return np.linalg.norm(fy - fh, axis=1) / np.linalg.norm(fy, axis=1)


def one_hot_kept(labels: torch.Tensor, probs: torch.Tensor, ignore: int = -100) -> tuple[np.ndarray, np.ndarray]:
    """y one-hot and h = probabilities, (n, positions·C), both 0 where the label is ``ignore``."""
    kept = (labels != ignore).unsqueeze(-1).double()
    y = torch.nn.functional.one_hot(labels.clamp_min(0), probs.shape[-1]).double() * kept
    h = probs.double() * kept
    return y.reshape(len(y), -1).numpy(), h.reshape(len(h), -1).numpy()


def last_delta_f(monitor: FrequencyPrincipleMonitor) -> np.ndarray:
    assert monitor.history is not None and len(monitor.history) >= 2, "the monitor skipped its recordings"
    return np.asarray(monitor.history.records["delta_f"][-1])


# ---------------------------------------------------------------------------------------------- HF transformers
class HFTagger(L.LightningModule):
    """Token classification as HF's examples write it: dict batches, labels -100 at padding, ``model(**batch)``."""

    def __init__(self, sequence_level: bool = False) -> None:
        super().__init__()
        transformers = pytest.importorskip("transformers")
        config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=32, max_position_embeddings=16, num_labels=4)
        cls = transformers.BertForSequenceClassification if sequence_level else transformers.BertForTokenClassification
        self.model = cls(config)

    def forward(self, input_ids, attention_mask, labels=None):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)

    def training_step(self, batch, _):
        return self(**batch).loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=3e-3)


def token_batches(n: int = 48, length: int = 8, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 40, (n, length), generator=g)
    lengths = torch.randint(3, length + 1, (n,), generator=g)
    mask = (torch.arange(length) < lengths[:, None]).long()
    labels = torch.where(mask.bool(), ids % 4, torch.full_like(ids, -100))  # padding labelled -100, as HF pads
    ids = ids * mask
    return [{"input_ids": ids[i], "attention_mask": mask[i], "labels": labels[i]} for i in range(n)]


def test_hf_token_classification_leaves_minus_100_out(tmp_path):
    torch.manual_seed(0)
    module = HFTagger()
    initial = copy.deepcopy(module.model).eval()
    data = token_batches()
    monitor = FrequencyPrincipleMonitor(**NO_FILES, probe_size=48, class_dim=-1, input_features="model.bert.embeddings",
                                        strict=True, spectral=ProjectedSpectralError(n_freqs=12),
                                        filtering=LowHighFrequencyError(deltas=[50.0]))
    trainer = L.Trainer(max_epochs=2, callbacks=[monitor], default_root_dir=tmp_path, **TRAINER)
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=16))
    batch = torch.utils.data.default_collate(data)
    with torch.no_grad():
        features = initial.bert.embeddings(input_ids=batch["input_ids"])  # frozen at the first recording
        probs = module.model.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(monitor._features, features.reshape(48, -1))
    y, h = one_hot_kept(batch["labels"], probs.softmax(-1))
    np.testing.assert_allclose(last_delta_f(monitor), direct_delta_f(features, y, h, monitor.history.freqs),
                               rtol=1e-4)


def test_hf_sequence_classification_dict_batches_drop_ignored_samples(tmp_path):
    torch.manual_seed(0)
    module = HFTagger(sequence_level=True)
    initial = copy.deepcopy(module.model).eval()
    data = token_batches(n=40)
    for i, sample in enumerate(data):  # one label per sequence; every fifth sample is marked to leave out
        sample["labels"] = torch.tensor(-100 if i % 5 == 0 else int(sample["input_ids"][0]) % 4)
    monitor = FrequencyPrincipleMonitor(**NO_FILES, probe_size=40, strict=True, input_features="model.bert.embeddings",
                                        spectral=ProjectedSpectralError(n_freqs=12),
                                        filtering=LowHighFrequencyError(deltas=[50.0]))
    trainer = L.Trainer(max_epochs=2, callbacks=[monitor], default_root_dir=tmp_path, **TRAINER)
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=8))
    batch = torch.utils.data.default_collate(data)
    kept = batch["labels"] != -100
    with torch.no_grad():
        features = initial.bert.embeddings(input_ids=batch["input_ids"][kept])
        probs = module.model.eval()(input_ids=batch["input_ids"][kept],
                                    attention_mask=batch["attention_mask"][kept]).logits.softmax(-1)
    y, h = one_hot_kept(batch["labels"][kept], probs)
    np.testing.assert_allclose(last_delta_f(monitor), direct_delta_f(features, y, h, monitor.history.freqs),
                               rtol=1e-4)
    assert np.isfinite(monitor.history.records["denoised_loss"][-1])  # the score runs on the kept samples


class HFViT(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        transformers = pytest.importorskip("transformers")
        config = transformers.ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=16,
                                        num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, num_labels=3)
        self.model = transformers.ViTForImageClassification(config)

    def forward(self, pixel_values, labels=None):
        return self.model(pixel_values=pixel_values, labels=labels)

    def training_step(self, batch, _):
        return self(**batch).loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=3e-3)


def test_hf_vit_pixel_values(tmp_path):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    images = torch.rand(60, 1, 8, 8, generator=g)
    labels = (images.mean(dim=(1, 2, 3)) * 30).long() % 3
    data = [{"pixel_values": images[i], "labels": labels[i]} for i in range(60)]
    module = HFViT()
    monitor = FrequencyPrincipleMonitor(probe_size=60, strict=True, spectral=ProjectedSpectralError(n_freqs=12),
                                        filtering=LowHighFrequencyError(deltas=[2.0]), **NO_FILES)
    trainer = L.Trainer(max_epochs=2, callbacks=[monitor], default_root_dir=tmp_path, **TRAINER)
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=20))
    with torch.no_grad():
        probs = module.model.eval()(pixel_values=images).logits.softmax(-1)
    y, h = one_hot_kept(labels, probs)
    np.testing.assert_allclose(last_delta_f(monitor), direct_delta_f(images, y, h, monitor.history.freqs), rtol=1e-4)


# ---------------------------------------------------------------------------------------------- torch_geometric
def random_graph(num_nodes: int, features: int, seed: int):
    pyg = pytest.importorskip("torch_geometric")
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(num_nodes, features, generator=g)
    edges = torch.randint(0, num_nodes, (2, 3 * num_nodes), generator=g)
    y = (x[:, 0] * 3).long().clamp_max(2)
    return pyg.data.Data(x=x, edge_index=pyg.utils.to_undirected(edges), y=y)


class NodeClassifier(L.LightningModule):
    """A GCN on one graph, written as PyG's Lightning examples write it: ``forward(x, edge_index)``."""

    def __init__(self, features: int = 5) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv

        self.conv1, self.conv2 = GCNConv(features, 16), GCNConv(16, 3)

    def forward(self, x, edge_index):
        return self.conv2(self.conv1(x, edge_index).tanh(), edge_index)

    def training_step(self, data, _):
        return torch.nn.functional.cross_entropy(self(data.x, data.edge_index), data.y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def test_pyg_node_classification_on_one_graph(tmp_path):
    from torch_geometric.loader import DataLoader

    torch.manual_seed(0)
    graph = random_graph(120, 5, seed=0)
    module = NodeClassifier()
    monitor = FrequencyPrincipleMonitor(probe_size=80, strict=True, spectral=ProjectedSpectralError(n_freqs=12),
                                        filtering=LowHighFrequencyError(deltas=[0.3]), **NO_FILES)
    trainer = L.Trainer(max_epochs=3, callbacks=[monitor], default_root_dir=tmp_path, **TRAINER)
    trainer.fit(module, DataLoader([graph], batch_size=1))
    rows = torch.randperm(120, generator=torch.Generator().manual_seed(0))[:80].sort().values  # seed 0's 80 nodes
    assert monitor.probe.rows.tolist() == rows.tolist()
    with torch.no_grad():
        probs = module.eval()(graph.x, graph.edge_index).softmax(-1)[rows]
    y, h = one_hot_kept(graph.y[rows], probs)
    np.testing.assert_allclose(last_delta_f(monitor), direct_delta_f(graph.x[rows], y, h, monitor.history.freqs),
                               rtol=1e-4)


class GraphClassifier(L.LightningModule):
    def __init__(self, takes_batch_object: bool = False) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv
        from torch_geometric.nn.aggr import MeanAggregation

        self.conv, self.pool, self.head = GCNConv(3, 8), MeanAggregation(), torch.nn.Linear(8, 2)
        self.takes_batch_object = takes_batch_object

    def forward(self, x, edge_index=None, batch=None):
        if self.takes_batch_object:  # forward(data), as many user modules write it
            x, edge_index, batch = x.x, x.edge_index, x.batch
        return self.head(self.pool(self.conv(x, edge_index).tanh(), batch))

    def training_step(self, data, _):
        out = self(data) if self.takes_batch_object else self(data.x, data.edge_index, data.batch)
        return torch.nn.functional.cross_entropy(out, data.y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def small_graphs(n: int = 48):
    graphs = [random_graph(4 + i % 4, 3, seed=i) for i in range(n)]
    for graph in graphs:
        graph.y = (graph.x[:, 0].mean() > 0.5).long().reshape(1)
    return graphs


def test_pyg_graph_classification_in_the_pooled_space(tmp_path):
    from torch_geometric.data import Batch
    from torch_geometric.loader import DataLoader

    torch.manual_seed(0)
    graphs = small_graphs()
    module = GraphClassifier()
    initial = copy.deepcopy(module).eval()
    # batch_size 16 < 48 graphs: each chunk of the probe is collated anew from its graphs
    monitor = FrequencyPrincipleMonitor(probe_size=48, input_features="pool", probe_batch_size=16, strict=True,
                                        spectral=ProjectedSpectralError(n_freqs=12),
                                        filtering=LowHighFrequencyError(n_deltas=2), **NO_FILES)
    trainer = L.Trainer(max_epochs=2, callbacks=[monitor], default_root_dir=tmp_path, **TRAINER)
    trainer.fit(module, DataLoader(graphs, batch_size=12))
    batch = Batch.from_data_list(graphs)
    with torch.no_grad():
        pooled = initial.pool(initial.conv(batch.x, batch.edge_index).tanh(), batch.batch)
        probs = module.eval()(batch.x, batch.edge_index, batch.batch).softmax(-1)
    torch.testing.assert_close(monitor._features, pooled)
    y, h = one_hot_kept(batch.y, probs)
    np.testing.assert_allclose(last_delta_f(monitor), direct_delta_f(pooled, y, h, monitor.history.freqs), rtol=1e-4)


def test_pyg_graph_batches_name_the_arguments_that_make_them_work(tmp_path):
    from torch_geometric.loader import DataLoader

    graphs = small_graphs(24)
    # node features are no per-graph points: the warning names input_features
    monitor = FrequencyPrincipleMonitor(**NO_FILES, probe_size=24, spectral=ProjectedSpectralError(n_freqs=8),
                                        filtering=LowHighFrequencyError(deltas=[0.5]))
    with pytest.warns(UserWarning, match="input_features") as record:
        L.Trainer(max_epochs=1, callbacks=[monitor], **TRAINER).fit(GraphClassifier(), DataLoader(graphs, 8))
    assert monitor.history is None and any("graph-pooling" in str(w.message) for w in record)
    # forward(data): the model cannot be called from the batch's fields; the warning names forward_fn
    monitor = FrequencyPrincipleMonitor(**NO_FILES, probe_size=24, input_features="pool",
                                        spectral=ProjectedSpectralError(n_freqs=8),
                                        filtering=LowHighFrequencyError(n_deltas=1))
    with pytest.warns(UserWarning, match=r"forward_fn=lambda module, batch: module\(batch\)"):
        L.Trainer(max_epochs=1, callbacks=[monitor], **TRAINER).fit(GraphClassifier(True), DataLoader(graphs, 8))
    # ... and with it the run is measured
    monitor = FrequencyPrincipleMonitor(probe_size=24, input_features="pool", strict=True, forward_fn=lambda module,
                                        batch: module(batch), spectral=ProjectedSpectralError(n_freqs=8),
                                        filtering=LowHighFrequencyError(n_deltas=1), **NO_FILES)
    L.Trainer(max_epochs=1, callbacks=[monitor], **TRAINER).fit(GraphClassifier(True), DataLoader(graphs, 8))
    assert len(monitor.history) == 2


# ---------------------------------------------------------------------------------------------- Lightning's demos
def test_lightning_demo_transformer_embeds_twice_first_call_by_default(tmp_path):
    from lightning.pytorch.demos import LightningTransformer

    class TokenPairs(LightningTransformer):  # the demo, on tokens made here instead of WikiText2 (no network)
        def prepare_data(self):
            pass

        def train_dataloader(self):
            g = torch.Generator().manual_seed(0)
            source = torch.randint(0, 16, (40, 6), generator=g)
            return torch.utils.data.DataLoader(list(zip(source, (source + 1) % 16)), batch_size=10)

    torch.manual_seed(0)
    module = TokenPairs(vocab_size=16)
    embedding = copy.deepcopy(module.model.embedding)
    probe_call = dict(forward_fn=lambda model, batch: model(*batch).view(batch[0].shape[0], 6, 16), class_dim=-1,
                      probe_size=40, spectral=ProjectedSpectralError(n_freqs=8),
                      filtering=LowHighFrequencyError(deltas=[100.0]), strict=True)
    monitor = FrequencyPrincipleMonitor(**NO_FILES, input_features="model.embedding", **probe_call)
    with pytest.warns(UserWarning, match=r"runs 2 times per forward call.*\('model.embedding', 1\)") as record:
        L.Trainer(max_epochs=1, callbacks=[monitor], **TRAINER).fit(module)
    assert sum("runs 2 times" in str(w.message) for w in record) == 1  # said once
    source, target = (torch.stack(part) for part in zip(*module.train_dataloader().dataset))
    with torch.no_grad():
        torch.testing.assert_close(monitor._features, embedding(source).reshape(40, -1))  # the source's, not last
    second = FrequencyPrincipleMonitor(**NO_FILES, input_features=("model.embedding", 1), **probe_call)
    module = TokenPairs(vocab_size=16)
    embedding = copy.deepcopy(module.model.embedding)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        L.Trainer(max_epochs=1, callbacks=[second], **TRAINER).fit(module)
    with torch.no_grad():
        torch.testing.assert_close(second._features, embedding(target).reshape(40, -1))


def test_lightning_boring_model_needs_and_takes_a_probe(tmp_path):
    from lightning.pytorch.demos.boring_classes import BoringModel, RandomDataset

    torch.manual_seed(0)
    module = BoringModel()
    monitor = FrequencyPrincipleMonitor(**NO_FILES, probe_size=16, spectral=ProjectedSpectralError(n_freqs=8),
                                        filtering=LowHighFrequencyError(deltas=[10.0]))
    with pytest.warns(UserWarning, match="probe_inputs"):  # the dataset yields bare tensors: no target
        L.Trainer(max_epochs=1, limit_train_batches=4, callbacks=[monitor], **TRAINER).fit(module)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 32, generator=g), torch.randn(50, 2, generator=g)
    monitor = FrequencyPrincipleMonitor(**NO_FILES, strict=True, probe_dataloader=(x, y),
                                        spectral=ProjectedSpectralError(n_freqs=8),
                                        filtering=LowHighFrequencyError(deltas=[10.0]))
    L.Trainer(max_epochs=2, limit_train_batches=4, callbacks=[monitor], **TRAINER).fit(
        module, torch.utils.data.DataLoader(RandomDataset(32, 64), batch_size=2))
    with torch.no_grad():
        h = module.eval()(x)
    np.testing.assert_allclose(last_delta_f(monitor), direct_delta_f(x, y.double().numpy(), h.double().numpy(),
                                                                     monitor.history.freqs), rtol=1e-4)
