using System.Buffers.Binary;
using System.Globalization;
using Atelier.Modeling.Mistral;
using Atelier.Modeling.SafeTensors;

namespace Atelier.Modeling.Tests;

/// <summary>
/// The adapter file as mistral-inference sees it: in the base model's dtype, with mistral-finetune's names
/// and shapes, merging to the model Atelier trained. <see cref="MistralInferenceLoraLoader"/> plays
/// mistral-inference.
/// </summary>
[Collection(GlobalKernelSettings.Name)]
public sealed class AdapterExportTests : IDisposable
{
    // Rank 4 and alpha 12 make a scale of 3, not mistral-inference's default of 2, so a test that
    // passed the wrong scale would fail.
    private static readonly LoraConfig Config = new(Rank: 4, Alpha: 12);

    private readonly string _dir = Atelier.Testing.TestCleanup.CreateDirectory("atelier-adapter-");

    public void Dispose() => Directory.Delete(_dir, true);

    /// <summary>A tiny model stored in <paramref name="dtype"/>, loaded, with an adapter whose B matrices are not zero.</summary>
    private (string Dir, MistralModel Model) ModelWithTrainedAdapter(SafeTensorDType dtype, IReadOnlyList<LinearKind>? targets = null)
    {
        var dir = Path.Combine(_dir, $"model-{dtype}-{Guid.NewGuid():N}");
        TinyModelWriter.Write(dir, seed: 5, dtype: dtype);
        var model = MistralModel.Load(dir);
        model.Adapter = LoraAdapter.Create(model.Args, Config with { Targets = targets }, 6);
        ModelTestFixtures.RandomizeB(model.Adapter, 7);
        return (dir, model);
    }

    private static float RecordedScaling(string loraPath)
    {
        using var file = SafeTensorsFile.Open(loraPath);
        return float.Parse(file.Header.Metadata[LoraAdapter.ScalingKey], CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// Merges the attached adapter the Atelier way and returns, per projection name, the base weight, the
    /// merged weight and the size of the update's terms, <c>scaling · Σₖ |B[o,k]|·|A[k,i]|</c>.
    /// </summary>
    private static Dictionary<string, (float[] Base, float[] Merged, float[] UpdateTerms)> AtelierMerge(MistralModel model)
    {
        var adapter = model.Adapter!;
        var before = new Dictionary<string, (float[] Base, float[] Terms)>(StringComparer.Ordinal);
        for (var l = 0; l < model.Args.NLayers; l++)
        {
            foreach (var kind in LinearKinds.All)
            {
                var (o, i) = LinearKinds.Dims(model.Args, kind);
                var terms = new float[o * i];
                if (adapter[l, kind] is { } pair)
                {
                    var a = pair.A.Span;
                    var b = pair.B.Span;
                    for (var row = 0; row < o; row++)
                    {
                        for (var col = 0; col < i; col++)
                        {
                            var sum = 0f;
                            for (var k = 0; k < pair.Rank; k++)
                            {
                                sum += Math.Abs(b[(row * pair.Rank) + k] * a[(k * i) + col]);
                            }

                            terms[(row * i) + col] = adapter.Config.Scaling * sum;
                        }
                    }
                }

                before[MistralWeights.LinearName(l, kind)] = (model.Weights.Layers[l][kind].Span.ToArray(), terms);
            }
        }

        model.MergeAdapter().Dispose();
        var result = new Dictionary<string, (float[], float[], float[])>(StringComparer.Ordinal);
        for (var l = 0; l < model.Args.NLayers; l++)
        {
            foreach (var kind in LinearKinds.All)
            {
                var name = MistralWeights.LinearName(l, kind);
                result[name] = (before[name].Base, model.Weights.Layers[l][kind].Span.ToArray(), before[name].Terms);
            }
        }

        return result;
    }

    /// <summary>
    /// Each merged weight within bfloat16 rounding of Atelier's. The strict loader works from A and B rounded
    /// to the model's dtype and rounds B·A, the scaled update and the sum: five roundings of at most half an
    /// ulp (2⁻⁹ relative) each, of terms no larger than |W| + scaling · Σₖ |B[o,k]|·|A[k,i]|. 2⁻⁶ of that covers them.
    /// </summary>
    private static void AssertMergesAgree(Dictionary<string, (float[] Base, float[] Merged, float[] UpdateTerms)> atelier, Dictionary<string, float[]> strict)
    {
        Assert.Equal(atelier.Keys.Order(StringComparer.Ordinal), strict.Keys.Order(StringComparer.Ordinal));
        var largestUpdate = 0f;
        foreach (var (name, (w, merged, terms)) in atelier)
        {
            var theirs = strict[name];
            Assert.Equal(merged.Length, theirs.Length);
            for (var j = 0; j < merged.Length; j++)
            {
                largestUpdate = Math.Max(largestUpdate, Math.Abs(merged[j] - w[j]));
                var tolerance = (Math.Abs(w[j]) + terms[j]) / 64;
                if (!(Math.Abs(merged[j] - theirs[j]) <= tolerance))
                {
                    Assert.Fail($"{name}[{j}]: Atelier merged {merged[j]}, mistral-inference would merge {theirs[j]} (base {w[j]}, tolerance {tolerance}).");
                }
            }
        }

        // The adapter changed the weights by far more than the tolerance, so agreement means something.
        Assert.True(largestUpdate > 0.1f, $"largest update {largestUpdate}");
    }

    private static float MaxAbsDifference(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        var max = 0f;
        for (var i = 0; i < a.Length; i++)
        {
            max = Math.Max(max, Math.Abs(a[i] - b[i]));
        }

        return max;
    }

    [Fact]
    public void SavedAdapter_OfABf16Base_PassesAStrictMistralInferenceLoader_AndMergesToAteliersWeights()
    {
        var (dir, model) = ModelWithTrainedAdapter(SafeTensorDType.BF16);
        using (model)
        {
            Assert.Equal(SafeTensorDType.BF16, model.Weights.StorageDType);
            var lora = Path.Combine(_dir, "lora.safetensors");
            model.SaveAdapter(lora);

            var raw = MistralInferenceLoraLoader.ReadSafeTensors(lora);
            Assert.All(raw.Values, t => Assert.Equal("BF16", t.DType));
            Assert.Equal(Config.Scaling, RecordedScaling(lora));

            var strict = MistralInferenceLoraLoader.LoadAndMerge(dir, lora, RecordedScaling(lora));
            AssertMergesAgree(AtelierMerge(model), strict);
        }
    }

    [Fact]
    public void SavedAdapter_MergedTheMistralInferenceWay_GivesTheLogitsOfAtelierWithTheAdapter()
    {
        var (dir, model) = ModelWithTrainedAdapter(SafeTensorDType.BF16);
        using (model)
        {
            var lora = Path.Combine(_dir, "lora.safetensors");
            model.SaveAdapter(lora);
            var strict = MistralInferenceLoraLoader.LoadAndMerge(dir, lora, RecordedScaling(lora));

            // The merged model as mistral-inference would hold it: bf16 throughout, written back as a model directory.
            var mergedDir = Path.Combine(_dir, "merged");
            var writer = new SafeTensorsWriter();
            foreach (var (name, t) in MistralInferenceLoraLoader.ReadSafeTensors(Path.Combine(dir, "consolidated.safetensors")))
            {
                if (strict.TryGetValue(name, out var merged))
                {
                    writer.Add(name, merged, [.. t.Shape.Select(d => (int)d)], SafeTensorDType.BF16);
                }
                else
                {
                    writer.AddRaw(name, SafeTensorDType.BF16, t.Shape, t.Bytes);
                }
            }

            writer.Save(Path.Combine(mergedDir, "consolidated.safetensors"));
            File.Copy(Path.Combine(dir, "params.json"), Path.Combine(mergedDir, "params.json"));
            using var theirs = MistralModel.Load(mergedDir);

            var batch = TrainingBatch.Pack(TestData.Tokens(24, model.Args.VocabSize, 3));
            using var withAdapter = model.ForwardLogits(batch);
            using var withMerged = theirs.ForwardLogits(batch);
            model.Adapter = null;
            using var baseOnly = model.ForwardLogits(batch);

            var drift = MaxAbsDifference(withAdapter.Span, withMerged.Span);
            var adapterEffect = MaxAbsDifference(withAdapter.Span, baseOnly.Span);
            Assert.True(adapterEffect > 0.5f, $"the adapter moved the logits by only {adapterEffect}");
            Assert.True(drift < adapterEffect / 20, $"merged bf16 logits differ by {drift}; the adapter's own effect is {adapterEffect}");
        }
    }

    [Fact]
    public void StrictLoader_RejectsAFloat32Adapter_ForABf16Base()
    {
        var (dir, model) = ModelWithTrainedAdapter(SafeTensorDType.BF16);
        using (model)
        {
            var f32 = Path.Combine(_dir, "lora-f32.safetensors");
            model.Adapter!.Save(f32, SafeTensorDType.F32);
            var rejected = Assert.Throws<LoraRejectedException>(() => MistralInferenceLoraLoader.LoadAndMerge(dir, f32, Config.Scaling));
            Assert.Contains("F32 != BF16", rejected.Message, StringComparison.Ordinal);

            // The same adapter in the model's dtype passes.
            var bf16 = Path.Combine(_dir, "lora-bf16.safetensors");
            model.SaveAdapter(bf16);
            Assert.NotEmpty(MistralInferenceLoraLoader.LoadAndMerge(dir, bf16, Config.Scaling));
        }
    }

    [Fact]
    public void StrictLoader_RejectsAnAdapterMissingAProjection()
    {
        var (dir, model) = ModelWithTrainedAdapter(SafeTensorDType.BF16);
        using (model)
        {
            var lora = Path.Combine(_dir, "lora.safetensors");
            model.SaveAdapter(lora);
            var writer = new SafeTensorsWriter();
            foreach (var (name, t) in MistralInferenceLoraLoader.ReadSafeTensors(lora))
            {
                if (!name.StartsWith("layers.1.feed_forward.w3.", StringComparison.Ordinal))
                {
                    writer.AddRaw(name, SafeTensorDType.BF16, t.Shape, t.Bytes);
                }
            }

            var partial = Path.Combine(_dir, "partial.safetensors");
            writer.Save(partial);
            var rejected = Assert.Throws<LoraRejectedException>(() => MistralInferenceLoraLoader.LoadAndMerge(dir, partial, Config.Scaling));
            Assert.Contains("layers.1.feed_forward.w3.lora_", rejected.Message, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData(SafeTensorDType.F16, "F16")]
    [InlineData(SafeTensorDType.F32, "F32")]
    public void SavedAdapter_TakesTheBaseModelsDType(SafeTensorDType dtype, string spelled)
    {
        var (dir, model) = ModelWithTrainedAdapter(dtype);
        using (model)
        {
            var lora = Path.Combine(_dir, "lora.safetensors");
            model.SaveAdapter(lora);
            Assert.All(MistralInferenceLoraLoader.ReadSafeTensors(lora).Values, t => Assert.Equal(spelled, t.DType));
            var strict = MistralInferenceLoraLoader.LoadAndMerge(dir, lora, RecordedScaling(lora));
            AssertMergesAgree(AtelierMerge(model), strict);
        }
    }

    [Fact]
    public void AdapterOnSomeProjections_IsSavedWithZeroPairsForTheOthers_SoMistralInferenceMergesNothingThere()
    {
        var (dir, model) = ModelWithTrainedAdapter(SafeTensorDType.BF16, [LinearKind.Wq, LinearKind.Wv]);
        using (model)
        {
            var lora = Path.Combine(_dir, "lora.safetensors");
            model.SaveAdapter(lora);
            var raw = MistralInferenceLoraLoader.ReadSafeTensors(lora);
            Assert.Equal(2 * 7 * model.Args.NLayers, raw.Count);
            Assert.Equal([4L, model.Args.HiddenDim], raw["layers.0.feed_forward.w2.lora_A.weight"].Shape);
            Assert.All(raw["layers.0.feed_forward.w2.lora_B.weight"].ToFloats(), v => Assert.Equal(0f, v));

            var strict = MistralInferenceLoraLoader.LoadAndMerge(dir, lora, RecordedScaling(lora));
            var atelier = AtelierMerge(model);
            AssertMergesAgree(atelier, strict);
            Assert.Equal(atelier["layers.1.attention.wo.weight"].Base, strict["layers.1.attention.wo.weight"]);

            // Atelier reads back only the projections it adapts.
            using var loaded = LoraAdapter.Load(model.Args, Config with { Targets = [LinearKind.Wq, LinearKind.Wv] }, lora);
            Assert.Null(loaded[0, LinearKind.W2]);
            Assert.NotNull(loaded[1, LinearKind.Wv]);
        }
    }

    [Fact]
    public void SavedBf16Values_AreTheFloat32MasterCopyRoundedToNearestEven_AndTheMasterCopyIsKept()
    {
        var (_, model) = ModelWithTrainedAdapter(SafeTensorDType.BF16);
        using (model)
        {
            var before = model.Adapter!.Parameters().Select(p => p.Value.Span.ToArray()).ToArray();
            var lora = Path.Combine(_dir, "lora.safetensors");
            model.SaveAdapter(lora);
            var raw = MistralInferenceLoraLoader.ReadSafeTensors(lora);
            var i = 0;
            foreach (var (name, value, _) in model.Adapter.Parameters())
            {
                Assert.Equal(before[i++], value.Span.ToArray());
                var stored = raw[name].ToFloats();
                var master = value.Span;
                for (var j = 0; j < master.Length; j++)
                {
                    Assert.Equal(MistralInferenceLoraLoader.Round(master[j], "BF16"), stored[j]);
                }
            }

            // Atelier reads the file back as the rounded values.
            using var loaded = LoraAdapter.Load(model.Args, Config, lora);
            Assert.Equal(raw["layers.1.attention.wk.lora_B.weight"].ToFloats(), loaded[1, LinearKind.Wk]!.B.Span.ToArray());
        }
    }

    [Fact]
    public void Load_RejectsAConfigWhoseScaleDiffersFromTheOneTheAdapterWasSavedWith()
    {
        var (_, model) = ModelWithTrainedAdapter(SafeTensorDType.BF16);
        using (model)
        {
            var lora = Path.Combine(_dir, "lora.safetensors");
            model.SaveAdapter(lora);
            var error = Assert.Throws<ModelFormatException>(() => LoraAdapter.Load(model.Args, Config with { Alpha = 8 }, lora));
            Assert.Contains(LoraAdapter.ScalingKey, error.Message, StringComparison.Ordinal);
            Assert.Throws<ModelFormatException>(() => LoraAdapter.Load(model.Args, new LoraConfig(Rank: 8, Alpha: 24), lora));
        }
    }

    [Theory]
    [InlineData(0x3F808000u, (ushort)0x3F80)] // 1 + 2⁻⁸: halfway, to the even 1.0
    [InlineData(0x3F818000u, (ushort)0x3F82)] // 1 + 3·2⁻⁸: halfway, to the even 1 + 2⁻⁶
    [InlineData(0x3F808001u, (ushort)0x3F81)] // just above halfway: up
    [InlineData(0x3F807FFFu, (ushort)0x3F80)] // just below halfway: down
    [InlineData(0xBF818000u, (ushort)0xBF82)] // negative halfway, to even
    [InlineData(0x7F7FFFFFu, (ushort)0x7F80)] // largest float32 rounds to +∞, as torch does
    [InlineData(0xFF800000u, (ushort)0xFF80)] // -∞ stays -∞
    [InlineData(0x00000001u, (ushort)0x0000)] // the smallest subnormal rounds to zero
    [InlineData(0x80000000u, (ushort)0x8000)] // -0 keeps its sign
    public void ToBFloat16_RoundsToNearestEven(uint floatBits, ushort expected)
        => Assert.Equal(expected, SafeTensorDTypes.ToBFloat16(BitConverter.UInt32BitsToSingle(floatBits)));

    [Theory]
    [InlineData(0x7FC00000u)] // quiet NaN
    [InlineData(0x7F800001u)] // signalling NaN with only a low payload bit: truncating or rounding would make it +∞
    [InlineData(0xFFFFFFFFu)] // negative NaN with every payload bit: rounding up would overflow the exponent
    public void ToBFloat16_KeepsNaNANaN(uint floatBits)
    {
        var bits = SafeTensorDTypes.ToBFloat16(BitConverter.UInt32BitsToSingle(floatBits));
        Assert.True(float.IsNaN(SafeTensorDTypes.FromBFloat16(bits)), $"0x{floatBits:X8} became 0x{bits:X4}");
    }

    [Fact]
    public void ToBFloat16_AgreesWithTheNearestNeighbour_OnRandomValues()
    {
        var rng = new Random(17);
        Span<byte> b = stackalloc byte[4];
        for (var n = 0; n < 200_000; n++)
        {
            rng.NextBytes(b);
            var value = BinaryPrimitives.ReadSingleLittleEndian(b);
            if (!float.IsFinite(value) || Math.Abs(value) > 1e38f)
            {
                continue;
            }

            var expected = MistralInferenceLoraLoader.Round(value, "BF16");
            Assert.Equal(BitConverter.SingleToUInt32Bits(expected), (uint)SafeTensorDTypes.ToBFloat16(value) << 16);
        }
    }
}
