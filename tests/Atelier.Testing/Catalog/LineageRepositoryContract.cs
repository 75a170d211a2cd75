using Atelier.Catalog;

namespace Atelier.Testing.Catalog;

/// <summary>What every <see cref="ILineageRepository"/> must do.</summary>
public abstract class LineageRepositoryContract : CatalogContract
{
    [Fact]
    public async Task Lineage_FindsEachWayADatasetOrAJobNamesAnInput_InTheWorkspaceOnly()
    {
        var catalog = await OpenCatalogAsync();
        var a = await WorkspaceAsync(catalog, "a");
        var b = await WorkspaceAsync(catalog, "b");
        await catalog.Datasets.InsertAsync(Dataset(a, "ds-train", """{"training_files":["f-1"],"validation_files":["f-2"],"model":"base-alias"}"""));
        await catalog.Datasets.InsertAsync(Dataset(a, "ds-dedup", """{"source_dataset":"ds-train","eval_files":["f-3"],"model":"base"}"""));
        await catalog.Datasets.InsertAsync(Dataset(a, "ds-eval", """{"eval_dataset":"ds-train"}""", createdAt: 3));
        await catalog.Datasets.InsertAsync(Dataset(b, "ds-other", """{"training_files":["f-1"]}"""));
        await catalog.Jobs.InsertAsync(Job(a, "job-files", requestJson: """{"training_files":[{"file_id":"f-4","weight":1}],"validation_files":["f-5"]}"""));
        await catalog.Jobs.InsertAsync(Job(a, "job-dataset", requestJson: """{"dataset_id":"ds-train","training_files":null}"""));
        await catalog.Jobs.InsertAsync(Job(a, "job-strings", requestJson: """{"training_files":["f-6"]}"""));
        var lineage = catalog.Lineage;

        // Oldest first (datasets at 1, jobs at 2, ds-eval at 3), then by id.
        Assert.Equal([new("dataset", "ds-train"), new("fine_tuning_job", "job-dataset")], await lineage.DerivedFromFileAsync(a, "f-1"));
        Assert.Equal([new("dataset", "ds-train"), new("fine_tuning_job", "job-dataset")], await lineage.DerivedFromFileAsync(a, "f-2"));
        Assert.Equal([new("dataset", "ds-dedup")], await lineage.DerivedFromFileAsync(a, "f-3"));
        Assert.Equal([new("fine_tuning_job", "job-files")], await lineage.DerivedFromFileAsync(a, "f-4"));
        Assert.Equal([new("fine_tuning_job", "job-files")], await lineage.DerivedFromFileAsync(a, "f-5"));

        // A job names its training files as objects; a bare string there is not a file id.
        Assert.Empty(await lineage.DerivedFromFileAsync(a, "f-6"));
        Assert.Empty(await lineage.DerivedFromFileAsync(a, "f-unused"));
        Assert.Equal([new("dataset", "ds-other")], await lineage.DerivedFromFileAsync(b, "f-1"));

        Assert.Equal(
            [new("dataset", "ds-dedup"), new("fine_tuning_job", "job-dataset"), new("dataset", "ds-eval")],
            await lineage.DerivedFromDatasetAsync(a, "ds-train"));
        Assert.Empty(await lineage.DerivedFromDatasetAsync(a, "ds-dedup"));
        Assert.Empty(await lineage.DerivedFromDatasetAsync(b, "ds-train"));
    }
}
